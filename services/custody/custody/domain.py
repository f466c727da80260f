"""Custody rules, as plain functions: who may do what with a lot, and the hash chain of its events. No I/O.

Custody records facts and refuses only what cannot be true of the caller's own actions (acting on a lot it does not
hold, drawing more than is left, receiving what was sent to someone else). Everything else that looks wrong
(weights that differ, seals that changed, times that contradict each other) is recorded faithfully for the audit
service to judge.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from shared.events import format_time
from shared.vocab import Mineral

__all__ = ["Mineral"]


class Form(StrEnum):
    ore = "ore"
    concentrate = "concentrate"
    metal = "metal"
    alloy = "alloy"
    component = "component"
    product = "product"


class TransformationKind(StrEnum):
    smelting = "smelting"
    refining = "refining"
    processing = "processing"
    alloying = "alloying"
    manufacturing = "manufacturing"
    splitting = "split"  # (not `split`: that would shadow str.split)
    merge = "merge"


# The most lots one transformation may draw from and make. A transformation is stored and published once, n + m rows
# and one event carrying both lists; at these bounds that event stays under ~0.4 MB with ids of the longest allowed
# length (100 characters), well within the broker's 1 MB message limit, and the whole write is timed in
# `make bench` (bench/transformation_bench.py).
MAX_TRANSFORMATION_INPUTS = 1000
MAX_TRANSFORMATION_OUTPUTS = 1000


class LotStatus(StrEnum):
    active = "active"
    in_transit = "in_transit"
    consumed = "consumed"  # all of it went into products
    depleted = "depleted"  # all of it was drawn into transformations


class OriginKind(StrEnum):
    mine = "mine"
    external = "external"
    transformation = "transformation"


CLOSED = frozenset({LotStatus.consumed, LotStatus.depleted})


class MiningType(StrEnum):
    asm = "asm"  # artisanal and small-scale mining
    lsm = "lsm"  # large-scale (industrial) mining


class Scheme(StrEnum):
    """The certification schemes a declaration from outside the system may name (the registry's vocabulary)."""

    rmap = "rmap"
    irma = "irma"
    fairmined = "fairmined"
    craft = "craft"
    itsci = "itsci"


# What each scheme records (status or level) and the values it has, as the registry keeps them.
SCHEME_VALUES: dict[Scheme, tuple[str, frozenset[str]]] = {
    Scheme.rmap: ("status", frozenset({"conformant", "active", "non_conformant", "suspended"})),
    Scheme.irma: ("level", frozenset({"transparency", "irma_50", "irma_75", "irma_100"})),
    Scheme.fairmined: ("status", frozenset({"certified", "suspended", "withdrawn"})),
    Scheme.craft: ("status", frozenset({"committed", "progressing", "conformant", "suspended"})),
    Scheme.itsci: ("status", frozenset({"member", "suspended", "withdrawn"})),
}
MAX_DECLARED_CERTIFICATIONS = 10


def declared_certification_problem(scheme: Scheme, status: str | None, level: str | None) -> tuple[str, str] | None:
    """Why a declared certification cannot be one of its scheme's, as (field, message); None when it can."""
    field_, allowed = SCHEME_VALUES[scheme]
    value, other = (status, level) if field_ == "status" else (level, status)
    if other is not None:
        return ("level" if field_ == "status" else "status"), f"{scheme.value} records a {field_}"
    if value not in allowed:
        return field_, f"{scheme.value} needs a {field_}: one of {sorted(allowed)}"
    return None


class Refusal(Exception):
    """An action that cannot be done (HTTP 409). `reason` is a stable slug; it is also published for audit."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LotState:
    lot_id: str
    custodian: str
    status: LotStatus
    remaining_kg: Decimal


def check_can_act(lot: LotState, actor: str, verb: str) -> None:
    """The caller holds the lot, and the lot is neither closed nor on its way somewhere."""
    if lot.status in CLOSED:
        raise Refusal("lot_closed", f"Lot {lot.lot_id} is {lot.status.value}; nothing is left to {verb}.")
    if lot.custodian != actor:
        raise Refusal("not_custodian", f"You do not hold lot {lot.lot_id}, so you cannot {verb} it.")
    if lot.status == LotStatus.in_transit:
        raise Refusal("in_transit", f"Lot {lot.lot_id} is in transit; it must be received before you {verb} it.")


def check_mass(lot: LotState, mass_kg: Decimal, verb: str) -> None:
    if mass_kg > lot.remaining_kg:
        raise Refusal(
            "exceeds_remaining", f"Cannot {verb} {mass_kg} kg of lot {lot.lot_id}: only {lot.remaining_kg} kg remain."
        )


def check_ship(lot: LotState, actor: str, to: str, mass_kg: Decimal) -> None:
    check_can_act(lot, actor, "ship")
    check_mass(lot, mass_kg, "ship")
    if to == actor:
        raise Refusal("ship_to_self", f"Lot {lot.lot_id} is already yours; a shipment needs another addressee.")


@dataclass(frozen=True, slots=True)
class ShipmentState:
    shipment_id: str
    lot_id: str
    to: str
    received: bool


def check_receive(shipment: ShipmentState, actor: str) -> None:
    if shipment.to != actor:
        raise Refusal("not_addressee", f"Shipment {shipment.shipment_id} is addressed to someone else.")
    if shipment.received:
        raise Refusal("already_received", f"Shipment {shipment.shipment_id} was already received.")


def after_draw(lot: LotState, mass_kg: Decimal, closed_status: LotStatus) -> tuple[Decimal, LotStatus]:
    """Remaining mass and status after drawing `mass_kg` (closing the lot when nothing is left)."""
    remaining = lot.remaining_kg - mass_kg
    return remaining, (closed_status if remaining == 0 else lot.status)


GENESIS = bytes(32)


# --- when an event can have happened ------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)


def since_epoch(at: datetime) -> timedelta:
    """`at` (aware) as a distance from 1970-01-01 UTC, computed without converting it: `0001-01-01T00:00:00+14:00`
    and `9999-12-31T23:59:59-14:00` are valid datetimes whose UTC instant is not one."""
    offset = at.utcoffset()
    assert offset is not None, "an aware datetime"
    return (at.replace(tzinfo=None) - _EPOCH) - offset


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The times an event may be dated at: not before `earliest`, at most `ahead` past the server's clock."""

    earliest: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    ahead: timedelta = timedelta(days=1)

    def problem(self, at: datetime, now: datetime) -> str | None:
        """Why `at` (aware) cannot be an event's time, or None when it can."""
        t = since_epoch(at)
        if t < since_epoch(self.earliest):
            return f"{at.isoformat()} is before {format_time(self.earliest)}, the earliest time accepted"
        latest = since_epoch(now) + self.ahead
        if t > latest:
            return (
                f"{at.isoformat()} is more than {self.ahead} ahead of the server's clock ({format_time(now)}); "
                "an event is recorded when it happens, not planned ahead"
            )
        return None


# --- the lot aggregate ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewLot:
    """A lot coming into being: at a mine, declared from outside, or made by a transformation."""

    lot_id: str
    mineral: str
    form: str
    mass_kg: Decimal
    custodian: str
    origin_kind: str
    origin_participant: str | None = None
    origin_country: str | None = None
    origin_region: str | None = None
    origin_mine_name: str | None = None
    origin_mining_type: str | None = None
    produced_at: datetime | None = None
    produced_by: str | None = None  # the ASM group that produced a titleholder's origin lot
    tag: str | None = None
    seal: str | None = None


@dataclass(slots=True)
class Lot:
    """A lot as a write sees it: its state, the head of its hash chain, and the events appended to the chain by this
    write (`new_events`: the `lot_events` rows the unit of work writes, with the lot's new head, in one go)."""

    lot_id: str
    mineral: str
    form: str
    custodian: str
    status: LotStatus
    remaining_kg: Decimal
    head_hash: bytes
    event_count: int
    new_events: list[tuple[Any, ...]] = field(default_factory=list)

    @classmethod
    def new(cls, lot: NewLot) -> Lot:
        """A lot not written yet: all of it left, held by its first custodian, an empty chain."""
        return cls(lot.lot_id, lot.mineral, lot.form, lot.custodian, LotStatus.active, lot.mass_kg, GENESIS, 0)

    @property
    def state(self) -> LotState:
        return LotState(self.lot_id, self.custodian, self.status, self.remaining_kg)

    def append(self, *, type: str, occurred_at: datetime, actor: str, data: dict[str, Any]) -> dict[str, Any]:
        """Add an event to the chain; returns the CloudEvent data (the event with its chain links)."""
        event_id = str(uuid.uuid4())
        seq = self.event_count + 1
        body = {
            "event_id": event_id,
            "lot_id": self.lot_id,
            "seq": seq,
            "type": type,
            "occurred_at": format_time(occurred_at),
            "actor": actor,
            "data": data,
        }
        prev = self.head_hash
        h = chain_hash(prev, body)
        self.new_events.append(
            (event_id, self.lot_id, seq, type, occurred_at, actor, orjson.dumps(data).decode(), prev, h)
        )
        self.head_hash, self.event_count = h, seq
        return {
            **data,
            "event_id": event_id,
            "lot_id": self.lot_id,
            "seq": seq,
            "prev_hash": prev.hex(),
            "hash": h.hex(),
            "occurred_at": format_time(occurred_at),
            "actor": actor,
        }


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes an event's hash covers: JSON with sorted keys, no whitespace, UTF-8 (anyone can recompute it)."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: bytes, body: dict[str, Any]) -> bytes:
    """sha256(prev_hash || canonical(body)): each of a lot's events commits to all events before it."""
    return hashlib.sha256(prev_hash + canonical(body)).digest()


def verify_chain(events: list[tuple[bytes, bytes, dict[str, Any]]]) -> int | None:
    """Check (prev_hash, hash, body) triples in order; returns the index of the first broken link, or None."""
    prev = GENESIS
    for i, (claimed_prev, claimed, body) in enumerate(events):
        if claimed_prev != prev or chain_hash(prev, body) != claimed:
            return i
        prev = claimed
    return None
