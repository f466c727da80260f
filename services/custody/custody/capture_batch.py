"""What a capture's attempts read and change: the document's lots, participants and shipments, in memory.

`service.LotReads` is where a write's attempt reads the lots, shipments and participants it acts on. Our API reads
the database; a capture reads `BatchReads`, filled with one statement each before the document is applied (the lots
locked), so that each event sees what the events before it changed (the same `Lot` objects) and nothing is written
until the end (`capture_repository.write_batch`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from custody import repository
from custody.capture_mapping import extension_of
from custody.domain import Lot, ShipmentState
from custody.epcis import Event
from custody.unit_of_work import UnitOfWork


class BatchReads:
    """What a capture's attempts read (`service.LotReads`), from memory: the document's lots, read once and locked,
    changed event after event (the same `Lot` objects), the lots it creates, the participants it names, the
    in-transit shipments addressed to the caller."""

    def __init__(self) -> None:
        self.participants: dict[str, repository.ParticipantRow] = {}
        self.lots: dict[str, Lot] = {}
        self.shipments: dict[str, dict[str, Any]] = {}
        self.by_lot: dict[str, list[dict[str, Any]]] = {}  # the shipments of each lot, oldest first

    async def participant(self, conn: Any, participant_id: str) -> repository.ParticipantRow | None:
        return self.participants.get(participant_id)

    async def lot_for_update(self, conn: Any, lot_id: str, caller: str) -> Lot | None:
        return self.lots.get(lot_id)

    async def lots_for_update(self, conn: Any, lot_ids: list[str], caller: str) -> dict[str, Lot]:
        return {i: self.lots[i] for i in lot_ids if i in self.lots}

    async def lot_and_product_for_update(
        self, conn: Any, lot_id: str, caller: str, product_id: str
    ) -> tuple[Lot | None, str | None]:
        """The lot from memory, the caller's product it names from the database (products are not captured)."""
        lot = self.lots.get(lot_id)
        product = await repository.product_named(conn, product_id, caller) if lot is not None else None
        owned = product is not None and product["owner"] == caller
        return lot, (product["product_id"] if owned and product is not None else None)

    async def lot_for_update_and_party(
        self, conn: Any, lot_id: str, participant_id: str, *, caller: str, lock: bool = True
    ) -> tuple[Lot | None, str | None]:
        lot = self.lots.get(lot_id)
        party = self.participants.get(participant_id)
        return (None, None) if lot is None else (lot, party.kind if party is not None else None)

    async def shipment_and_lot_for_update(
        self, conn: Any, shipment_id: str, *, lock: bool = True
    ) -> tuple[ShipmentState, dict[str, Any], Lot] | None:
        row = self.shipments.get(shipment_id)
        lot = self.lots.get(row["lot_id"]) if row is not None else None
        if row is None or lot is None:
            return None
        state = ShipmentState(row["shipment_id"], row["lot_id"], row["to_participant"], row["status"] == "received")
        return state, {**row, "mineral": lot.mineral, "form": lot.form}, lot

    def add_shipment(self, row: dict[str, Any]) -> None:
        self.shipments[row["shipment_id"]] = row
        self.by_lot.setdefault(row["lot_id"], []).append(row)

    def in_transit_to(self, lot_id: str, caller: str, source: str | None) -> str | None:
        """The oldest in-transit shipment of `lot_id` to `caller` (from `source`, when named)."""
        for row in self.by_lot.get(lot_id, ()):
            if (
                row["lot_id"] == lot_id
                and row["to_participant"] == caller
                and row["status"] == "in_transit"
                and source in (None, row["from_participant"])
            ):
                return str(row["shipment_id"])
        return None


class BatchUnitOfWork(UnitOfWork):
    """A capture event's unit of work: its attempt reads from the document's `BatchReads` (`service._reads`)."""

    __slots__ = ("reads",)

    def __init__(self, conn: asyncpg.Connection, reads: BatchReads) -> None:
        super().__init__(conn, locked=True, participants=None)
        self.reads = reads


def local_ids(events: list[Event]) -> set[str]:
    """The local lot ids a document's commissionings and transformation outputs name (`mcoc:lotId`)."""
    out: set[str] = set()
    for event in events:
        ilmd = getattr(event, "ilmd", None)
        value = extension_of(ilmd, "lotId")
        if isinstance(value, str):
            out.add(value)
        outputs = extension_of(ilmd, "outputs")
        for o in outputs if isinstance(outputs, list) else ():
            value = extension_of(o, "lotId") if isinstance(o, dict) else None
            value = value if value is not None else (o.get("lotId") if isinstance(o, dict) else None)
            if isinstance(value, str):
                out.add(value)
    return out
