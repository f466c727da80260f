"""Custody use cases: load (and lock), apply the domain rules, record what changes on the unit of work, answer.

Every write is an `attempt` run by `custody.unit_of_work.Write`, which owns the rest: the Idempotency-Key, the
attempt without locks and the retry under them, the refusal record, writing it all with the answer, waking the
relay. An attempt never writes; a `Refusal` it raises leaves only the refusal's record behind. Reads run on a
pooled connection and apply `shared.visibility` (who may see a lot) before answering.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
import orjson

from custody import corrections, domain, repository, schemas
from custody.domain import Lot, LotStatus, NewLot, OriginKind, ShipmentState
from custody.unit_of_work import Answer, Attempt, UnitOfWork, Write
from shared.auth import Principal, refuse_regulator
from shared.events import format_time
from shared.genealogy import Reason, edge_depth, truncated
from shared.iso import current_region, is_region
from shared.problems import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from shared.visibility import Party, identity_disclosed, party_shown
from shared.vocab import SMELTER_KINDS, Kind, smelting_basis

GRAM = Decimal("0.001")


def _participant_only(who: Principal, verb: str) -> None:
    refuse_regulator(who, verb)
    if who.is_operator:
        raise Forbidden(
            f"The operator token cannot {verb}: custody operations are done by participants with their own token."
        )


class LotReads(Protocol):
    """What a write's attempt reads: the lots, shipments and participants it acts on. The database (`repository`,
    locked under `uow.locked`), or what an EPCIS capture holds in memory for its whole document
    (`custody.capture_batch.BatchReads`: the document's lots read once, locked, and changed event after event)."""

    async def participant(self, conn: Any, participant_id: str) -> repository.ParticipantRow | None: ...
    async def lot_for_update(self, conn: Any, lot_id: str, caller: str) -> Lot | None: ...
    async def lots_for_update(self, conn: Any, lot_ids: list[str], caller: str) -> dict[str, Lot]: ...
    async def lot_and_product_for_update(
        self, conn: Any, lot_id: str, caller: str, product_id: str
    ) -> tuple[Lot | None, str | None]: ...
    async def lot_for_update_and_party(
        self, conn: Any, lot_id: str, participant_id: str, *, caller: str, lock: bool = True
    ) -> tuple[Lot | None, str | None]: ...
    async def shipment_and_lot_for_update(
        self, conn: Any, shipment_id: str, *, lock: bool = True
    ) -> tuple[ShipmentState, dict[str, Any], Lot] | None: ...


def _reads(uow: UnitOfWork) -> LotReads:
    """Where `uow`'s attempt reads (`LotReads`): a capture's unit of work carries its own, any other reads the
    database."""
    reads: LotReads | None = getattr(uow, "reads", None)
    return reads if reads is not None else repository  # type: ignore[return-value]


async def _me(uow: UnitOfWork, who: Principal, *, cached: bool = False) -> repository.ParticipantRow:
    """The caller as custody knows it (from `registry.events`): from the cache when `cached` and it is there (its
    version is checked where it is used), else read (and cached)."""
    me = uow.participants.get(who.subject) if cached and uow.participants is not None else None
    if me is None:
        me = await _reads(uow).participant(uow.conn, who.subject)
        if me is None:
            raise ServiceUnavailable("Your registration has not reached the custody service yet; retry in a moment.")
        if uow.participants is not None:
            uow.participants.put(me)
    return me


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16].upper()}"


def _lot_id(me: repository.ParticipantRow, sent: str | None, generated: str, where: str) -> str:
    """The id of a lot `me` creates (`domain.scoped_lot_id`): `<its prefix>:<local id>`, from the local id sent (or
    its own full id, as is), else from a generated one. An id that cannot be its own: 422 saying how ids look."""
    scoped = domain.scoped_lot_id(me.lot_prefix, _new_id(generated) if sent is None else sent)
    if scoped is None:
        raise InvalidInput(where, domain.lot_id_rule(me.lot_prefix))
    return scoped


_NO_PRODUCT = "No product {product_id!r} of yours."
"""A product there is none of, or another participant's: the same 404 (reads and writes alike)."""
_NO_LOT = "No lot {lot_id!r}."
"""A write about a lot there is none of, or one the caller may not see (never held it): the same 404, the same
body with the id as sent, nothing recorded (no oracles)."""


def _region(sent: str | None, country: str, where: str) -> str | None:
    """An origin's region as stored (the current ISO 3166-2 code of what was sent), or None when none was sent;
    422 at `where` when it is no region of `country`."""
    if not sent:
        return None
    region = current_region(sent)
    if not is_region(region) or not region.startswith(country + "-"):
        raise InvalidInput(where, f"{sent!r} is not an ISO 3166-2 region of {country}")
    return region


def _mass(v: Decimal) -> str:
    """Masses in events: decimal strings with exactly 3 decimals (kg to the gram), never binary floats."""
    return format(v.quantize(GRAM), "f")


# --- writes ---------------------------------------------------------------------------------------------------


async def _asm_producer(uow: UnitOfWork, me: repository.ParticipantRow, group_id: str) -> None:
    """`produced_by` of a registration: only an industrial titleholder (lsm) names one, and it is a registered ASM
    group (a mine registered as asm), as custody knows participants (from `registry.events`, cached like the
    caller). A group's registration that has not reached custody yet is refused like an unknown one."""
    if me.mining_type != "lsm":
        raise InvalidInput(
            "body.produced_by",
            f"only an industrial mine (lsm) sells material ASM groups produced; you are {me.mining_type}",
        )
    if group_id == me.id:
        raise InvalidInput("body.produced_by", "name the ASM group that produced the lot, not yourself")
    group = uow.participants.get(group_id) if not uow.locked and uow.participants is not None else None
    if group is None:
        group = await repository.participant(uow.conn, group_id)
        if group is not None and uow.participants is not None:
            uow.participants.put(group)
    if group is None:
        raise InvalidInput("body.produced_by", f"{group_id!r} is not a registered participant")
    if group.kind != "mine" or group.mining_type != "asm":
        raise InvalidInput("body.produced_by", f"{group_id!r} is not an ASM group (a mine registered as asm)")


def register_lot_attempt(who: Principal, body: schemas.LotCreate) -> Attempt:
    """The attempt of `register_lot` (EPCIS capture runs it too, on its own unit of work)."""

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "register lots")
        if who.kind != "mine":
            raise Forbidden(
                f"Only mines register origin lots (you are a {who.kind}); declare material from outside "
                "the system with POST /lots/external."
            )
        me = await _me(uow, who, cached=not uow.locked)
        if body.produced_by is not None:
            await _asm_producer(uow, me, body.produced_by)
        new = NewLot(
            lot_id=_lot_id(me, body.lot_id, "LOT", "body.lot_id"),
            mineral=body.mineral.value,
            form=body.form.value,
            mass_kg=body.mass_kg,
            custodian=me.id,
            origin_kind=OriginKind.mine.value,
            origin_participant=me.id,
            origin_country=me.country,
            origin_region=me.region,
            origin_mine_name=me.name,
            origin_mining_type=me.mining_type,
            produced_at=body.produced_at,
            tag=body.tag,
            seal=body.seal,
            produced_by=body.produced_by,
        )
        lot = uow.new_lot(new)
        uow.subject = new.lot_id
        if not uow.locked:
            uow.changes.registered_from = (me.id, me.version)
        uow.append(
            lot,
            type="custody.lot.registered",
            occurred_at=body.produced_at,
            actor=me.id,
            data={
                "mineral": lot.mineral,
                "form": lot.form,
                "mass_kg": _mass(body.mass_kg),
                "tag": body.tag,
                "seal": body.seal,
                "custodian": me.id,
                "origin": {
                    "kind": "mine",
                    "participant_id": me.id,
                    "name": me.name,
                    "country": me.country,
                    "region": me.region,
                    "mining_type": me.mining_type,
                    **({"produced_by": body.produced_by} if body.produced_by is not None else {}),
                },
            },
        )
        return repository.new_lot_out(new, uow.created_at, lot)

    return attempt


async def register_lot(*, write: Write, body: schemas.LotCreate) -> Answer:
    """A mine registers an origin lot. Without locks, the mine comes from the participants cache: the statement
    writes only if the mine's version is still the one cached (`repository.PERSIST_NEW_LOT`)."""
    attempt = register_lot_attempt(write.who, body)
    return await write.run(action="register", subject=body.lot_id, attempt=attempt, model=schemas.Lot, optimistic=True)


async def declare_external(*, write: Write, body: schemas.ExternalDeclaration) -> Answer:
    """Material that arrived from outside the system: a lot of its own, with its declared origin."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "declare material")
        o = body.origin
        for i, c in enumerate(o.certifications):
            problem = domain.declared_certification_problem(c.scheme, c.status, c.level)
            if problem is not None:
                raise InvalidInput(f"body.origin.certifications[{i}].{problem[0]}", problem[1])
        me = await _me(uow, who)
        region = _region(o.region, o.country, "body.origin.region")
        if o.participant_id is not None:
            await _named_mine(uow, me, o.participant_id, o.country)
        new = NewLot(
            lot_id=_lot_id(me, body.lot_id, "EXT", "body.lot_id"),
            mineral=body.mineral.value,
            form=body.form.value,
            mass_kg=body.mass_kg,
            custodian=me.id,
            origin_kind=OriginKind.external.value,
            origin_participant=o.participant_id,
            origin_country=o.country,
            origin_region=region,
            origin_mine_name=o.mine_name,
            origin_mining_type=o.mining_type.value if o.mining_type else None,
            produced_at=None,
            tag=body.tag,
            seal=body.seal,
        )
        lot = uow.new_lot(new)
        uow.subject = new.lot_id
        uow.append(
            lot,
            type="custody.lot.external_declared",
            occurred_at=body.received_at,
            actor=me.id,
            data={
                "mineral": lot.mineral,
                "form": lot.form,
                "mass_kg": _mass(body.mass_kg),
                "tag": body.tag,
                "seal": body.seal,
                "custodian": me.id,
                "custodian_kind": me.kind,
                "declared_origin": {
                    "country": o.country,
                    "region": region,
                    "mine_name": o.mine_name,
                    "participant_id": o.participant_id,
                    "mining_type": o.mining_type.value if o.mining_type else None,
                    "certifications": [c.model_dump(mode="json") for c in o.certifications],
                },
                "supplier": body.supplier.model_dump(),
            },
        )
        return repository.new_lot_out(new, uow.created_at, lot)

    return await write.run(action="declare_external", subject=body.lot_id, attempt=attempt, model=schemas.Lot)


RECYCLING_KINDS = frozenset({Kind.recycler.value, *SMELTER_KINDS})
"""Who registers recycled or scrap material as an origin lot: recyclers, and smelters and refiners taking scrap."""


async def register_recycled(*, write: Write, body: schemas.RecycledLotCreate) -> Answer:
    """A recycler (or a smelter or refiner taking scrap directly) registers recycled or scrap material as an origin
    lot of its own: origin kind `recycled`, the registrant its origin participant, the country (and region) where it
    was collected; `custody.lot.recycled`, the first event of the lot's chain (as a mine's registration)."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "register recycled lots")
        if who.kind not in RECYCLING_KINDS:
            raise Forbidden(
                f"Only recyclers, smelters and refiners register recycled or scrap material (you are a {who.kind}); "
                "declare material from outside the system with POST /lots/external."
            )
        me = await _me(uow, who)
        region = _region(body.region, body.country, "body.region")
        at = body.collected_at or datetime.now(UTC)
        new = NewLot(
            lot_id=_lot_id(me, body.lot_id, "RCY", "body.lot_id"),
            mineral=body.mineral.value,
            form=body.form.value,
            mass_kg=body.mass_kg,
            custodian=me.id,
            origin_kind=OriginKind.recycled.value,
            origin_participant=me.id,
            origin_country=body.country,
            origin_region=region,
            produced_at=at,
            tag=body.tag,
            seal=body.seal,
            origin_source=body.source.value,
            origin_description=body.description,
        )
        lot = uow.new_lot(new)
        uow.subject = new.lot_id
        uow.append(
            lot,
            type="custody.lot.recycled",
            occurred_at=at,
            actor=me.id,
            data={
                "mineral": lot.mineral,
                "form": lot.form,
                "mass_kg": _mass(body.mass_kg),
                "tag": body.tag,
                "seal": body.seal,
                "custodian": me.id,
                "custodian_kind": me.kind,
                "origin": {
                    "kind": OriginKind.recycled.value,
                    "source": body.source.value,
                    "participant_id": me.id,
                    "country": body.country,
                    "region": region,
                    "description": body.description,
                    "collected_at": format_time(body.collected_at) if body.collected_at else None,
                },
            },
        )
        return repository.new_lot_out(new, uow.created_at, lot)

    return await write.run(action="register_recycled", subject=body.lot_id, attempt=attempt, model=schemas.Lot)


async def _named_mine(uow: UnitOfWork, me: repository.ParticipantRow, mine_id: str, country: str) -> None:
    """The registered mine a declaration names: a mine custody knows (from `registry.events`), in the declared
    country, and not the declarant itself (a mine confirms what others say of it)."""
    where = "body.origin.participant_id"
    if mine_id == me.id:
        raise InvalidInput(where, "name the mine the material comes from, not yourself")
    mine = await repository.participant(uow.conn, mine_id)
    if mine is None or mine.kind != "mine":
        raise InvalidInput(where, f"{mine_id!r} is not a registered mine")
    if mine.country != country:
        raise InvalidInput("body.origin.country", f"mine {mine_id} is registered in {mine.country}, not in {country}")


async def confirm_origin(*, write: Write, lot_id: str, body: schemas.OriginConfirmationCreate) -> Answer:
    """The mine a declaration from outside the system named confirms it, or disputes it (the latest answer
    counts): an event on the lot's chain (`custody.lot.origin_confirmed`) and the answer kept
    (`origin_confirmations`). Only that mine answers: a holder of the lot is refused (403), anyone else does not
    see the lot (404)."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "confirm a declared origin")
        found = await repository.declared_lot_for_update(uow.conn, lot_id, who.subject)
        named = found is not None and found.origin_kind == OriginKind.external.value and found.named_mine == who.subject
        if found is None or (not named and not found.caller_holds):
            raise NotFound(f"No lot {lot_id!r} declared from outside the system that names you as its mine.")
        if not named:
            raise Forbidden(
                f"Only the registered mine a declaration from outside the system names confirms its origin; lot "
                f"{found.lot.lot_id} names {'no mine' if found.named_mine is None else 'another participant'}."
            )
        lot, at = found.lot, datetime.now(UTC)
        uow.subject = lot.lot_id
        data = {"confirmed": body.confirmed, "note": body.note, "mine": who.subject}
        uow.append(lot, type="custody.lot.origin_confirmed", occurred_at=at, actor=who.subject, data=data)
        uow.touched(lot)
        event_id = lot.new_events[-1][0]
        uow.changes.origin_confirmation = (lot.lot_id, who.subject, body.confirmed, body.note, at, event_id)
        return {
            "lot_id": lot.lot_id,
            "mine": who.subject,
            "confirmed": body.confirmed,
            "note": body.note,
            "answered_at": at,
            "event_id": event_id,
        }

    return await write.run(
        action="confirm_origin", subject=lot_id, attempt=attempt, model=schemas.OriginConfirmation, status=200
    )


def ship_attempt(who: Principal, lot_id: str, body: schemas.ShipmentCreate) -> Attempt:
    """The attempt of `ship` (EPCIS capture runs it too, on its own unit of work)."""

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "ship lots")
        lot, to_kind = await _reads(uow).lot_for_update_and_party(
            uow.conn, lot_id, body.to, caller=who.subject, lock=uow.locked
        )
        if lot is None:  # none, or one the caller never held: the same answer
            raise NotFound(_NO_LOT.format(lot_id=lot_id))
        uow.subject = lot.lot_id
        if to_kind is None:
            raise InvalidInput("body.to", f"{body.to!r} is not a registered participant")
        domain.check_ship(lot.state, who.subject, body.to, body.mass_kg)
        shipment_id = _new_id("SHP")
        uow.changes.shipment = (
            shipment_id,
            lot.lot_id,
            who.subject,
            body.to,
            body.mass_kg,
            body.shipped_at,
            body.seal,
            body.transit_countries,
            body.max_transit_days,
        )
        uow.changes.shipment_tag, uow.changes.transit_regions = body.tag, body.transit_regions
        remaining_before = lot.remaining_kg
        lot.status = LotStatus.in_transit
        uow.touched(lot)
        uow.append(
            lot,
            type="custody.lot.shipped",
            occurred_at=body.shipped_at,
            actor=who.subject,
            data={
                "shipment_id": shipment_id,
                "from": who.subject,
                "to": body.to,
                "to_kind": to_kind,
                "mass_kg": _mass(body.mass_kg),
                "remaining_before_kg": _mass(remaining_before),
                "seal": body.seal,
                "tag": body.tag,
                "transit_countries": body.transit_countries,
                "transit_regions": body.transit_regions,
                "max_transit_days": body.max_transit_days,
                "mineral": lot.mineral,
                "form": lot.form,
            },
        )
        return {
            "shipment_id": shipment_id,
            "lot_id": lot.lot_id,
            "from_participant": who.subject,
            "to": body.to,
            "mass_kg": body.mass_kg,
            "shipped_at": body.shipped_at,
            "seal": body.seal,
            "tag": body.tag,
            "transit_countries": body.transit_countries,
            "transit_regions": body.transit_regions,
            "max_transit_days": body.max_transit_days,
            "status": "in_transit",
            "received_at": None,
            "received_mass_kg": None,
            "received_seal": None,
            "received_tag": None,
        }

    return attempt


async def ship(*, write: Write, lot_id: str, body: schemas.ShipmentCreate) -> Answer:
    """The holder ships (part of) a lot to another participant; checked on the lot as read, or under its lock."""
    attempt = ship_attempt(write.who, lot_id, body)
    return await write.run(action="ship", subject=lot_id, attempt=attempt, model=schemas.Shipment, optimistic=True)


def receive_attempt(who: Principal, shipment_id: str, body: schemas.ReceiptCreate) -> Attempt:
    """The attempt of `receive` (EPCIS capture runs it too, on its own unit of work)."""

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "receive shipments")
        found = await _reads(uow).shipment_and_lot_for_update(uow.conn, shipment_id, lock=uow.locked)
        # None, or a shipment neither addressed to the caller nor sent by it: the same answer (no oracles)
        if found is None or who.subject not in (found[1]["to_participant"], found[1]["from_participant"]):
            raise NotFound(f"No shipment {shipment_id!r}.")
        state, row, lot = found
        corrections.check_receivable(shipment_id, row["status"])  # a shipment voided by a correction: 409
        domain.check_receive(state, who.subject)
        uow.changes.receipt = (shipment_id, body.received_at, body.mass_kg, body.seal)
        uow.changes.received_tag = body.tag
        lot.custodian, lot.status, lot.remaining_kg = who.subject, LotStatus.active, body.mass_kg
        uow.touched(lot)
        uow.held_by(who.subject, lot)
        uow.append(
            lot,
            type="custody.lot.received",
            occurred_at=body.received_at,
            actor=who.subject,
            data={
                "shipment_id": shipment_id,
                "by": who.subject,
                "mass_kg": _mass(body.mass_kg),
                "seal": body.seal,
                "tag": body.tag,
                "shipped": {
                    "from": row["from_participant"],
                    "mass_kg": _mass(row["mass_kg"]),
                    "shipped_at": format_time(row["shipped_at"]),
                    "seal": row["seal"],
                    "tag": row["tag"],
                    "max_transit_days": row["max_transit_days"],
                },
                "mineral": lot.mineral,
                "form": lot.form,
            },
        )
        return repository.shipment_out(
            {
                **row,
                "status": "received",
                "received_at": body.received_at,
                "received_mass_kg": body.mass_kg,
                "received_seal": body.seal,
                "received_tag": body.tag,
            }
        )

    return attempt


async def receive(*, write: Write, shipment_id: str, body: schemas.ReceiptCreate) -> Answer:
    """The addressee receives a shipment and becomes the lot's custodian; checked on the shipment and lot as read,
    or under their locks."""
    attempt = receive_attempt(write.who, shipment_id, body)
    return await write.run(
        action="receive", subject=shipment_id, attempt=attempt, model=schemas.Shipment, status=200, optimistic=True
    )


def _duplicates(ids: Sequence[str | None], where: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(ids):
        if v is None:
            continue
        if v in seen:
            raise InvalidInput(f"body.{where}.{i}.lot_id", f"lot {v} is listed twice")
        seen.add(v)


def check_transformation(body: schemas.TransformationCreate) -> None:
    """Before any work: at most `MAX_TRANSFORMATION_INPUTS` inputs and `MAX_TRANSFORMATION_OUTPUTS` outputs (the
    problem names the bound, `max_inputs` / `max_outputs`), no lot listed twice, no output that is also an input."""
    for where, n, bound in (
        ("inputs", len(body.inputs), domain.MAX_TRANSFORMATION_INPUTS),
        ("outputs", len(body.outputs), domain.MAX_TRANSFORMATION_OUTPUTS),
    ):
        if n > bound:
            problem = InvalidInput(
                f"body.{where}",
                f"a transformation takes at most {bound} {where} (max_{where}: {bound}); {n} were sent",
            )
            problem.extra[f"max_{where}"] = bound
            raise problem
    _duplicates([d.lot_id for d in body.inputs], "inputs")
    _duplicates([o.lot_id for o in body.outputs], "outputs")
    input_ids = {d.lot_id for d in body.inputs}
    for i, o in enumerate(body.outputs):
        if o.lot_id in input_ids:
            raise InvalidInput(f"body.outputs.{i}.lot_id", f"lot {o.lot_id} is also an input")


def transformation_digest(data: dict[str, Any]) -> str:
    """Hex sha256 of a `custody.transformation.recorded` event's data (canonical JSON, as a chain event's): each lot
    event of the transformation carries it, so every lot's hash chain commits to the whole transformation."""
    return hashlib.sha256(domain.canonical(data)).hexdigest()


def transform_attempt(who: Principal, body: schemas.TransformationCreate) -> Attempt:
    """The attempt of `transform` (EPCIS capture runs it too, on its own unit of work)."""

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "transform lots")
        me = await _me(uow, who)
        input_ids = [d.lot_id for d in body.inputs]
        lots = await _reads(uow).lots_for_update(uow.conn, input_ids, who.subject)
        for i, d in enumerate(body.inputs):
            if d.lot_id not in lots:  # none, or one the caller never held: the same answer
                raise NotFound(f"No lot {d.lot_id!r} (inputs.{i}).")
        drawn = [lots[d.lot_id] for d in body.inputs]
        _duplicates([lot.lot_id for lot in drawn], "inputs")  # a bare id and its full id name one lot
        uow.subject = drawn[0].lot_id
        for d, lot in zip(body.inputs, drawn, strict=True):
            domain.check_can_act(lot.state, who.subject, "transform")
            domain.check_mass(lot.state, d.mass_kg, "draw")
        output_ids = [_lot_id(me, o.lot_id, "LOT", f"body.outputs.{i}.lot_id") for i, o in enumerate(body.outputs)]
        _duplicates(output_ids, "outputs")
        drawn_ids = {lot.lot_id for lot in drawn}
        for i, full in enumerate(output_ids):
            if full in drawn_ids:
                raise InvalidInput(f"body.outputs.{i}.lot_id", f"lot {full} is also an input")
        transformation_id = _new_id("TRF")
        made = [
            NewLot(
                lot_id=full,
                mineral=o.mineral.value,
                form=o.form.value,
                mass_kg=o.mass_kg,
                custodian=me.id,
                origin_kind=OriginKind.transformation.value,
                origin_participant=me.id,
                origin_country=me.country,
                origin_region=me.region,
                produced_at=body.occurred_at,
            )
            for o, full in zip(body.outputs, output_ids, strict=True)
        ]
        outputs = [uow.new_lot(new) for new in made]
        inputs_data = []  # the answer's, with the masses before and after
        for d, lot in zip(body.inputs, drawn, strict=True):
            before = lot.remaining_kg
            lot.remaining_kg, lot.status = domain.after_draw(lot.state, d.mass_kg, LotStatus.depleted)
            inputs_data.append(
                {
                    "lot_id": lot.lot_id,
                    "mineral": lot.mineral,
                    "form": lot.form,
                    "mass_kg": _mass(d.mass_kg),
                    "remaining_before_kg": _mass(before),
                    "remaining_after_kg": _mass(lot.remaining_kg),
                }
            )
        custody_model = body.custody_model.value if body.custody_model is not None else None
        header = {
            "transformation_id": transformation_id,
            "kind": body.kind.value,
            "by": me.id,
            "by_kind": me.kind,
            "by_country": me.country,
            "custody_model": custody_model,  # in the digest: the lots' chains commit to it
        }
        recorded: dict[str, Any] = {
            **header,
            "occurred_at": format_time(body.occurred_at),
            "inputs": [
                {"lot_id": i["lot_id"], "mineral": i["mineral"], "form": i["form"], "mass_kg": i["mass_kg"]}
                for i in inputs_data
            ],
            "outputs": [
                {"lot_id": n.lot_id, "mineral": n.mineral, "form": n.form, "mass_kg": _mass(n.mass_kg)} for n in made
            ],
        }
        digest = transformation_digest(recorded)
        uow.changes.transformation = repository.transformation_rows(
            transformation_id,
            body.kind.value,
            me.id,
            me.kind,
            body.occurred_at,
            [(lot.lot_id, d.mass_kg) for d, lot in zip(body.inputs, drawn, strict=True)],
            [n.lot_id for n in made],
            custody_model,
        )
        uow.touched(*drawn)
        uow.event("custody.transformation.recorded", transformation_id, recorded)
        per_lot = {**header, "transformation_digest": digest}
        for lot, part in zip(drawn, inputs_data, strict=True):
            uow.append(
                lot,
                type="custody.lot.transformed",
                occurred_at=body.occurred_at,
                actor=me.id,
                data={
                    **per_lot,
                    "role": "input",
                    "mineral": part["mineral"],
                    "form": part["form"],
                    "mass_kg": part["mass_kg"],
                    "remaining_before_kg": part["remaining_before_kg"],
                    "remaining_after_kg": part["remaining_after_kg"],
                },
            )
        for lot, o in zip(outputs, recorded["outputs"], strict=True):
            uow.append(
                lot,
                type="custody.lot.transformed",
                occurred_at=body.occurred_at,
                actor=me.id,
                data={**per_lot, "role": "output", "mineral": o["mineral"], "form": o["form"], "mass_kg": o["mass_kg"]},
            )
        return {
            "transformation_id": transformation_id,
            "kind": body.kind,
            "actor": me.id,
            "occurred_at": body.occurred_at,
            "custody_model": custody_model,
            "inputs": inputs_data,
            "outputs": [
                repository.new_lot_out(new, uow.created_at, lot) for new, lot in zip(made, outputs, strict=True)
            ],
        }

    return attempt


async def transform(*, write: Write, body: schemas.TransformationCreate) -> Answer:
    """The holder transforms lots (smelt, refine, alloy, split, merge...): inputs drawn, output lots made. The
    transformation is stored once (a row, and a row per input and per output: n + m, never n x m) and published once
    (`custody.transformation.recorded`, with both lists); each lot's own event (`custody.lot.transformed`) says what
    happened to that lot and refers to the transformation by id and digest. An output id taken already refuses the
    whole transformation."""
    check_transformation(body)  # before the key, the locks or anything else
    attempt = transform_attempt(write.who, body)
    return await write.run(
        action="transform", subject=body.inputs[0].lot_id, attempt=attempt, model=schemas.Transformation
    )


def consume_attempt(who: Principal, lot_id: str, body: schemas.ConsumptionCreate) -> Attempt:
    """The attempt of `consume` (EPCIS capture runs it too, on its own unit of work)."""

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "consume lots")
        product_id = None
        if body.product_id is None:
            lot = await _reads(uow).lot_for_update(uow.conn, lot_id, who.subject)
        else:  # the product looked up in the lot's statement: no round trip of its own
            lot, product_id = await _reads(uow).lot_and_product_for_update(
                uow.conn, lot_id, who.subject, body.product_id
            )
        if lot is None:  # none, or one the caller never held: the same answer
            raise NotFound(_NO_LOT.format(lot_id=lot_id))
        if body.product_id is not None and product_id is None:  # another's or none: the same answer
            raise NotFound(_NO_PRODUCT.format(product_id=body.product_id))
        uow.subject = lot.lot_id
        domain.check_can_act(lot.state, who.subject, "consume")
        domain.check_mass(lot.state, body.mass_kg, "consume")
        consumption_id = _new_id("CNS")
        lot.remaining_kg, lot.status = domain.after_draw(lot.state, body.mass_kg, LotStatus.consumed)
        uow.changes.consumption = (
            consumption_id,
            lot.lot_id,
            who.subject,
            body.product,
            body.mass_kg,
            body.consumed_at,
            product_id,
        )
        uow.touched(lot)
        uow.append(
            lot,
            type="custody.lot.consumed",
            occurred_at=body.consumed_at,
            actor=who.subject,
            data={
                "consumption_id": consumption_id,
                "by": who.subject,
                "product_id": product_id,
                "product": body.product,
                "mass_kg": _mass(body.mass_kg),
                "remaining_after_kg": _mass(lot.remaining_kg),
                "mineral": lot.mineral,
                "form": lot.form,
            },
        )
        return {
            "consumption_id": consumption_id,
            "lot_id": lot.lot_id,
            "product_id": product_id,
            "product": body.product,
            "mass_kg": body.mass_kg,
            "consumed_at": body.consumed_at,
            "remaining_kg": lot.remaining_kg,
            "status": lot.status,
        }

    return attempt


async def consume(*, write: Write, lot_id: str, body: schemas.ConsumptionCreate) -> Answer:
    """The holder consumes (part of) a lot into a product."""
    attempt = consume_attempt(write.who, lot_id, body)
    return await write.run(action="consume", subject=lot_id, attempt=attempt, model=schemas.Consumption)


# --- products (issue 25) ------------------------------------------------------------------------------------------


def _product_event(uow: UnitOfWork, type: str, product: dict[str, Any], me: repository.ParticipantRow) -> None:
    """`custody.product.registered` / `.updated`: the product whole, as it now is (keyed by its id)."""
    data = {
        "product_id": product["product_id"],
        "name": product["name"],
        "gtin": product["gtin"],
        "description": product["description"],
        "by": me.id,
        "by_kind": me.kind,
        "registered_at": format_time(product["registered_at"]),
    }
    uow.event(type, product["product_id"], data)


def _gtin_taken(gtin: str | None, other: str | None) -> None:
    if other is not None:
        raise Conflict(
            f"GTIN {gtin} is already your product {other}'s; a GTIN names one product",
            product_id=other,
        )


async def register_product(*, write: Write, body: schemas.ProductCreate) -> Answer:
    """A participant registers a product (its SKU as the local id, scoped like its lots): one per id, one per GTIN
    of its own (409 otherwise); `custody.product.registered` in the same transaction."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "register products")
        me = await _me(uow, who)
        product_id = domain.scoped_lot_id(me.lot_prefix, _new_id("PRD") if body.product_id is None else body.product_id)
        if product_id is None:  # scoped like lot ids: only its owner's prefix
            raise InvalidInput("body.product_id", domain.lot_id_rule(me.lot_prefix).replace("lot", "product"))
        id_taken, gtin_of = await repository.product_clashes(uow.conn, product_id, me.id, body.gtin)
        if id_taken:
            raise Conflict(f"Product {product_id} already exists; change it with PATCH /products/{{product_id}}.")
        _gtin_taken(body.gtin, gtin_of)
        at = datetime.now(UTC)
        product = {
            "product_id": product_id,
            "owner": me.id,
            "name": body.name,
            "gtin": body.gtin,
            "mineral": body.mineral.value if body.mineral else None,
            "description": body.description,
            "registered_at": at,
            "updated_at": at,
        }
        uow.subject = product_id
        uow.changes.product = (
            repository.INSERT_PRODUCT,
            product_id,
            me.id,
            body.name,
            body.gtin,
            product["mineral"],
            body.description,
            at,
        )
        _product_event(uow, "custody.product.registered", product, me)
        return product

    return await write.run(action="register_product", subject=body.product_id, attempt=attempt, model=schemas.Product)


async def update_product(*, write: Write, product_id: str, body: schemas.ProductUpdate) -> Answer:
    """The owner changes a product's name, GTIN or description (what the body sends; `gtin` or `description` null
    removes it); `custody.product.updated` with the product whole. Another's product: 404, as for none."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "change products")
        me = await _me(uow, who)
        await uow.conn.execute(repository.LOCK_OWNER_PRODUCTS, me.id)
        found = await repository.product_named(uow.conn, product_id, me.id)
        if found is None or found["owner"] != me.id:
            raise NotFound(_NO_PRODUCT.format(product_id=product_id))
        product = repository.product_out(found)
        sent = body.model_fields_set
        for name in ("name", "gtin", "description"):
            if name in sent:
                product[name] = getattr(body, name)
        if "gtin" in sent and product["gtin"] is not None and product["gtin"] != found["gtin"]:
            _, gtin_of = await repository.product_clashes(uow.conn, product["product_id"], me.id, product["gtin"])
            _gtin_taken(product["gtin"], gtin_of)
        product["updated_at"] = datetime.now(UTC)
        uow.subject = product["product_id"]
        uow.changes.product = (
            repository.UPDATE_PRODUCT,
            product["product_id"],
            product["name"],
            product["gtin"],
            product["description"],
            product["updated_at"],
        )
        _product_event(uow, "custody.product.updated", product, me)
        return product

    return await write.run(
        action="update_product", subject=product_id, attempt=attempt, model=schemas.Product, status=200
    )


async def get_product(*, reads: Reads, who: Principal, product_id: str) -> dict[str, Any]:
    """A product: the owner's own; the operator and regulators read any; anyone else: 404, as for none."""
    async with reads.pool.acquire() as conn:
        found = await repository.product_named(conn, product_id, who.subject)
    if found is None or (who.is_participant and found["owner"] != who.subject):
        raise NotFound(f"No product {product_id!r}.")
    return repository.product_out(found)


async def list_products(
    *, reads: Reads, who: Principal, owner: str | None, after: int, limit: int
) -> schemas.ProductPage:
    """A participant's own products; the operator's and a regulator's: everyone's (or `owner`'s), oldest first."""
    if who.is_participant:
        if owner is not None and owner != who.subject:
            return schemas.ProductPage(items=[], next_cursor=None)
        owner = who.subject
    async with reads.pool.acquire() as conn:
        rows = await repository.list_products(conn, owner=owner, after=after, limit=limit + 1)
    return schemas.ProductPage(
        items=[schemas.Product.model_validate(repository.product_out(r)) for r in rows[:limit]],
        next_cursor=str(rows[limit - 1]["created_seq"]) if len(rows) > limit else None,
    )


@dataclass(frozen=True, slots=True)
class Reads:
    """What the reads run on: the pool, how deep genealogy walks go (`shared.visibility`), and how many lots and
    edges a trace holds at most (`GenealogySettings`)."""

    pool: asyncpg.Pool
    max_depth: int
    max_lots: int = 10_000
    max_edges: int = 50_000


# --- reads ------------------------------------------------------------------------------------------------------


_UNREADABLE = "No lot {lot_id!r} that you may read (you may read the lots you hold or held, and their upstream)."

# --- what a participant sees of what it reads (issue 24; docs/api.md, "What a participant sees") ------------------
#
# The operator and a regulator see everything they may read whole. A participant viewer sees:
# - a lot's current state (`_CURRENT`) only when it is the lot's current custodian;
# - a participant's identity (ids, names) wherever one appears only as `shared.visibility.identity_disclosed` says
#   for that participant's kind and policy (custody's projection of `registry.events`) and the viewer's relation to
#   it: `self`; `same_event` (a history event the viewer did or is named in); `counterparty` (a shipment between
#   them, either way); else `downstream`: whatever a participant may read in custody is upstream of what it holds or
#   held (the lot itself, its upstream trace, the lots it held in a downstream trace, their histories);
# - a lot's history up to its cut (`_history_end`).

_CURRENT = ("custodian", "status", "remaining_kg", "events", "head_hash")
"""A lot's current state: shown only to its current custodian (a lot's event count and head hash grow with every
later event, so they are current state too)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """A participant reading, and how it stands to the participants what it reads names (`repository.party_views`;
    a participant custody does not know gets the default policy)."""

    subject: str
    parties: dict[str, repository.PartyView]
    _shown: dict[tuple[str, str | None], bool] = field(default_factory=dict)  # `shows` outside events, per trace

    def shows(self, participant: str | None, kind: str | None = None, in_event: Collection[str] = ()) -> bool:
        """May the viewer learn this participant's identity? None (no participant named) is nothing to withhold;
        `kind`: the participant's kind where what is read records it (else the projection's)."""
        if participant is None:
            return True
        key = (participant, kind)
        if not in_event and key in self._shown:
            return self._shown[key]
        view = self.parties.get(participant)
        # whatever a participant reads in custody is upstream of what it holds or held: at least `downstream`
        known = Party(
            kind or (view.kind if view else None),
            view.disclosure if view else None,
            counterparty=view is not None and view.counterparty,
            downstream=True,
        )
        shown = party_shown(self.subject, participant, known, same_event=self.subject in in_event)
        if not in_event:
            self._shown[key] = shown
        return shown


def _lot_parties(out: dict[str, Any]) -> tuple[str | None, str | None]:
    return out["origin"]["participant_id"], out.get("produced_by")


async def _viewer(
    conn: asyncpg.Connection,
    subject: str,
    named: set[str | None],
    known: dict[str, repository.PartyView] | None = None,
) -> Viewer:
    """The viewer with its relations to the participants `named` (itself and None need no look-up; smelters and
    refiners are left out by the callers: they are public); `known`: those already looked up (a trace's statement
    does it for the participants its lots and edges name), so only the others cost a round trip."""
    parties = dict(known or {})
    ids = {p for p in named if p is not None and p != subject and p not in parties}
    if ids:
        parties.update(await repository.party_views(conn, subject, ids))
    return Viewer(subject, parties)


def _lot_seen(out: dict[str, Any], viewer: Viewer | None) -> dict[str, Any]:
    """A lot (`repository.lot_out`, or a trace node) as `viewer` may see it (None: whole), with its `withheld`
    list; changed in place."""
    withheld: list[str] = []
    if viewer is not None:
        if out["custodian"] != viewer.subject:
            for name in _CURRENT:
                out[name] = None
            withheld.extend(_CURRENT)
        origin = out["origin"]
        if not viewer.shows(origin["participant_id"]):
            origin["participant_id"] = origin["mine_name"] = None
            withheld += ["origin.participant_id", "origin.mine_name"]
        registration = (origin["participant_id"],)  # a titleholder's registration names the group: shared by both
        if not viewer.shows(out.get("produced_by"), in_event=registration):
            out["produced_by"] = None
            withheld.append("produced_by")
    out["withheld"] = withheld
    return out


@dataclass(frozen=True, slots=True)
class _Access:
    """A lot the caller may read, and how: `participant` false for whoever sees it whole (operator, regulator);
    for a participant (when asked: `_readable`'s `paths`) whether it holds or held the lot (`held`) and the
    transformations of it through which its material reached a lot it holds or held (`fed`)."""

    lot: asyncpg.Record
    participant: bool
    held: bool = False
    fed: frozenset[str] = frozenset()


async def _opens(conn: asyncpg.Connection, who: Principal, lot_id: str, max_depth: int) -> bool:
    """A regulator's grant opens the lot (`shared.visibility.grant_opens_lot_sql`)."""
    lots, parties = sorted(who.grant_lots), sorted(who.grant_participants)
    return await repository.grant_opens(conn, lot_id, lots, parties, max_depth)


async def _named(conn: asyncpg.Connection, who: Principal, lot_id: str) -> str:
    """The lot a participant means: a bare id (no `:`) is its own `<prefix>:<id>` first, as in writes
    (`repository.lot_named`), then the exact id; one primary-key statement, only for a bare id, the same whether
    the lot exists or not. Full ids, and every id from the operator or a regulator, are taken as they are."""
    if ":" in lot_id or not who.is_participant:
        return lot_id
    return await repository.resolve_lot_id(conn, lot_id, who.subject)


async def _readable(
    conn: asyncpg.Connection, who: Principal, lot_id: str, max_depth: int, *, paths: bool = False
) -> _Access:
    """The lot if `who` may read it, else 404 exactly as for a lot that does not exist: the operator reads every
    lot, a regulator what its grant opens, anyone else (a participant) the lots it holds or held and their
    upstream; one statement either way (none more for a lot it may not read than for none at all). `paths`: a
    participant's `held` and `fed` too (a history's cut: a walk down every path from the lot; without, the walk
    stops at the first lot the participant holds or held)."""
    lot_id = await _named(conn, who, lot_id)
    if who.is_operator or who.is_regulator:
        r = (
            await repository.get_lot(conn, lot_id)
            if who.is_operator
            else await repository.lot_if_opened(
                conn, lot_id, sorted(who.grant_lots), sorted(who.grant_participants), max_depth
            )
        )
        if r is not None:
            return _Access(r, participant=False)
    elif paths:
        r, held, fed = await repository.lot_as_read_by(conn, lot_id, who.subject, max_depth)
        if r is not None and (held or fed):
            return _Access(r, participant=True, held=held, fed=fed)
    else:
        r = await repository.lot_if_readable(conn, lot_id, who.subject, max_depth)
        if r is not None:
            return _Access(r, participant=True)
    raise NotFound(_UNREADABLE.format(lot_id=lot_id))


async def get_lot(*, reads: Reads, who: Principal, lot_id: str) -> dict[str, Any]:
    async with reads.pool.acquire() as conn:
        access = await _readable(conn, who, lot_id, reads.max_depth)
        out = repository.lot_out(access.lot)
        viewer = await _viewer(conn, who.subject, set(_lot_parties(out))) if access.participant else None
    return _lot_seen(out, viewer)


async def list_lots(
    *,
    reads: Reads,
    who: Principal,
    custodian: str | None,
    mineral: str | None,
    status: str | None,
    after: int,
    limit: int,
) -> schemas.LotPage:
    """Lots the caller holds or held (the operator: all; a regulator: what its grant opens), oldest first. A
    participant filters on what it may see: `custodian` and `status` are current state, so they match only the lots
    it holds now (`custodian` naming anyone else matches nothing)."""
    participant = not (who.is_operator or who.is_regulator)
    if participant and custodian is not None and custodian != who.subject:
        return schemas.LotPage(items=[], next_cursor=None)
    if participant and status is not None:
        custodian = who.subject
    opened = (sorted(who.grant_lots), sorted(who.grant_participants), reads.max_depth) if who.is_regulator else None
    async with reads.pool.acquire() as conn:
        rows = await repository.list_lots(
            conn,
            holder=who.subject if participant else None,
            custodian=custodian,
            mineral=mineral,
            status=status,
            after=after,
            limit=limit + 1,
            opened=opened,
        )
        outs = [repository.lot_out(r) for r in rows[:limit]]
        named = {p for out in outs for p in _lot_parties(out)}
        viewer = await _viewer(conn, who.subject, named) if participant else None
    return schemas.LotPage(
        items=[schemas.Lot.model_validate(_lot_seen(out, viewer)) for out in outs],
        next_cursor=str(rows[limit - 1]["created_seq"]) if len(rows) > limit else None,
    )


async def history(*, reads: Reads, who: Principal, lot_id: str) -> dict[str, Any]:
    """Every event of a lot's chain the caller may see, in order, each as it may see it (`domain.disclose_event`: a
    withheld field shows only as its salted digest), and whether the chain of what is shown verifies (recomputed
    here from the digests, so withholding cannot break it; a history cut short is a prefix of the chain, so it
    verifies from the genesis too). A participant sees the lot's events up to `_history_end`, and the identities
    in them as `_withheld` says."""
    async with reads.pool.acquire() as conn:
        access = await _readable(conn, who, lot_id, reads.max_depth, paths=True)
        lot_id = access.lot["lot_id"]  # as named: a participant's bare id is its own lot's full id
        stored = []
        for r in await repository.history(conn, lot_id):
            s = dict(r)
            s["data"], s["salts"] = orjson.loads(r["data"]), r["salts"] and orjson.loads(r["salts"])
            stored.append(s)
        viewer = None
        if access.participant:
            end = _history_end(stored, who.subject, access)
            if end is not None:
                stored = [s for s in stored if s["seq"] <= end]
            named: set[str | None] = set()
            for s in stored:
                for ids, kind in _naming(s).values():
                    if kind not in SMELTER_KINDS:
                        named.update(ids)
            viewer = await _viewer(conn, who.subject, named)
        events, triples = [], []
        for s in stored:
            item = domain.disclose_event(s, _withheld(viewer, s))
            triples.append((s["prev_hash"], s["hash"], domain.shown_body(lot_id, item)))
            events.append(item)
        corrections.annotate(events)
        named_products = sorted({p for e in events if isinstance(p := e["data"].get("product_id"), str)})
        products = await repository.product_names(conn, named_products) if named_products else {}
    return {
        "lot_id": lot_id,
        "events": events,
        "chain_valid": domain.verify_chain(triples) is None,
        "products": products,
    }


def _history_end(stored: list[dict[str, Any]], subject: str, access: _Access) -> int | None:
    """The last event (seq) of a lot's history a participant sees; None: all of it.

    - Its current custodian sees all of it (what came before it is its lot's upstream).
    - A former holder sees it up to and including its buyer's receipt (the `custody.lot.received` of a shipment it
      sent), nothing later: computed here from the lot's shipments and receipts, as recorded on its chain.
    - A participant downstream of the lot (its material reached a lot the participant holds or held through a
      transformation of this lot: `_Access.fed`) sees it up to and including that transformation's event.
    - A lot reached more than one way (held twice, held and also downstream, fed through two transformations) is
      seen up to the latest of its cut-offs: the union of what each way shows (a history is a prefix of the chain).
    """
    if access.lot["custodian"] == subject:
        return None
    end = 0
    for s in stored:
        t, data = s["type"], s["data"]
        let_go = t == "custody.lot.received" and _at(data, "shipped.from") == subject
        if let_go or (t == "custody.lot.transformed" and data.get("transformation_id") in access.fed):
            end = s["seq"]
    return end


_NAMED_IN: dict[str, tuple[tuple[str, tuple[str, ...], str | None], ...]] = {
    "custody.lot.registered": (
        ("custodian", ("custodian",), None),
        ("origin", ("origin.participant_id", "origin.produced_by"), None),
    ),
    "custody.lot.external_declared": (
        ("custodian", ("custodian",), "custodian_kind"),
        ("declared_origin", ("declared_origin.participant_id",), None),
        ("supplier", (), None),  # an outside party: `_OUTSIDE`
    ),
    "custody.lot.origin_confirmed": (("mine", ("mine",), None),),
    "custody.lot.shipped": (("from", ("from",), None), ("to", ("to",), "to_kind")),
    "custody.lot.received": (("by", ("by",), None), ("shipped", ("shipped.from",), None)),
    "custody.lot.transformed": (("by", ("by",), "by_kind"),),
    "custody.lot.consumed": (("by", ("by",), None),),
    "custody.lot.recycled": (
        ("custodian", ("custodian",), "custodian_kind"),
        ("origin", ("origin.participant_id",), "custodian_kind"),
    ),
}
"""Per event type (custody/events.py), the fields of `data` that name participants: (field, the paths of the ids it
names (none: an outside party), the data field that records their kind, if any). `actor` names the actor in every
event (its kind: `_ACTOR_KIND`)."""
_ACTOR_KIND = {
    "custody.lot.external_declared": "custodian_kind",
    "custody.lot.transformed": "by_kind",
    "custody.lot.recycled": "custodian_kind",
}
_WITHHELD_WITH = {"custody.lot.consumed": {"by": ("product_id",)}}
"""Fields withheld with another (per event type): a consumption's product id is scoped by its consumer's prefix, so
it is withheld wherever the consumer is."""
_NAME_WITH = {"origin.participant_id": "origin.name", "declared_origin.participant_id": "declared_origin.mine_name"}
"""The mine's name next to its id in the same object (committed key by key): withheld with the id."""
_OUTSIDE = ""
"""An outside party a field names (an external declaration's supplier): no registered participant, so no policy on
record; it is judged as one with the default policy (shown to those in the event, not beyond)."""


def _naming(s: dict[str, Any]) -> dict[str, tuple[list[str | None], str | None]]:
    """The fields of a stored event that name participants: {field: (the ids it names, their kind if recorded)}.
    A field is withheld whole (a top-level key of `data`: what recipe 2 commits to one by one), unless the event
    commits to the named part on its own (its dotted path has a salt of its own): then only that part."""
    data, salts = s["data"], s.get("salts") or {}
    actor_kind = _ACTOR_KIND.get(s["type"])
    fields: dict[str, tuple[list[str | None], str | None]] = {
        "actor": ([s["actor"]], data.get(actor_kind) if actor_kind else None)
    }
    for name, paths, kind in _NAMED_IN.get(s["type"], ()):
        if name not in data:
            continue
        of_kind = data.get(kind) if kind else None
        if not paths:
            fields[name] = ([_OUTSIDE], of_kind)
        for path in paths:
            shown_as = path if path in salts else name
            fields.setdefault(shown_as, ([], of_kind))[0].append(_at(data, path))
            if shown_as == path and _NAME_WITH.get(path) in salts:
                fields.setdefault(_NAME_WITH[path], ([], of_kind))[0].append(_at(data, path))
    return fields


def _at(data: dict[str, Any], path: str) -> str | None:
    """The participant id at a dotted path of an event's data (None where there is none)."""
    value: Any = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def _withheld(viewer: Viewer | None, s: dict[str, Any]) -> frozenset[str]:
    """The fields of a stored event `viewer` may not see (None: the operator or a regulator, who see all): those
    naming a participant whose identity it may not learn (`Viewer.shows`: `same_event` when the viewer did the event
    or is named in it). Its digests are shown instead (`domain.disclose_event`; recipe 1 events are shown whole)."""
    if viewer is None:
        return frozenset()
    fields = _naming(s)
    in_event = {p for ids, _ in fields.values() for p in ids if p}
    withheld = set()
    for name, (ids, kind) in fields.items():
        for p in ids:
            if p == _OUTSIDE:
                shown = identity_disclosed(None, None, "same_event" if viewer.subject in in_event else "downstream")
            else:
                shown = viewer.shows(p, kind, in_event)
            if not shown:
                withheld.add(name)
    for name, also in _WITHHELD_WITH.get(s["type"], {}).items():
        if name in withheld:
            withheld.update(f for f in also if f in s["data"])
    return frozenset(withheld)


ORIGIN_KINDS = frozenset({OriginKind.mine.value, OriginKind.external.value, OriginKind.recycled.value})
"""Where a trace upstream ends: the lots that came into custody from outside a transformation."""


async def trace(*, reads: Reads, who: Principal, lot_id: str, upstream: bool) -> dict[str, Any]:
    """The trace in the documented shape (`schemas.Trace`), from one statement (two downstream, with products); for
    a participant the same statement also gives the policies of the participants its lots and edges name and whether
    they are the reader's counterparties (`repository.party_rows`: no round trip of its own; a downstream trace's
    product consumers are looked up after, `repository.party_views`); what the participant may not see is withheld
    (`_lot_seen`).
    Whether a participant may read the lot at all is checked in the trace's statement (no rows: 404, as for a lot
    that does not exist); a regulator's grant is checked before.

    At most `reads.max_lots` lots and `reads.max_edges` edges: the walk stops before the step that would pass the
    lots (in the statement), and a trace whose edges would pass theirs is not built but counted, then taken again to
    the deepest depth that keeps within (`repository._trace_sql`, `shared.genealogy.edge_depth`): one more
    statement, only then. Either way `truncated` says why, the limit, and at which lots it stopped.

    A regulator sees, whole, the trace's lots its grant opens (and the edges between them); a participant, upstream,
    every lot; downstream, the lot asked about and the lots it held itself; products only of the lots it holds now
    (a former holder sees no later consumption), and its own."""
    max_depth, limit = reads.max_depth, None
    reason: Reason = "max_depth"
    participant = not (who.is_operator or who.is_regulator)
    async with reads.pool.acquire() as conn:
        lot_id = await _named(conn, who, lot_id)
        if who.is_regulator and not await _opens(conn, who, lot_id, reads.max_depth):
            raise NotFound(_UNREADABLE.format(lot_id=lot_id))
        for _ in range(3):  # the first answer, or its counts; at most a re-take (and one more, if ever needed)
            rows = await repository.trace_rows(
                conn,
                lot_id,
                upstream=upstream,
                max_depth=max_depth,
                max_lots=reads.max_lots,
                max_edges=reads.max_edges,
                participant=who.subject if participant else None,
                read_depth=reads.max_depth,  # a participant's lot that may not read it: no rows (404)
            )
            if not rows or rows[0]["edge"] is not None:
                break
            counts = [(r["transformation_id"], r["parent"] == "in", r["depth"], int(r["mass_kg"])) for r in rows]
            max_depth, reason, limit = edge_depth(counts, reads.max_edges, max_depth), "max_edges", reads.max_edges
        else:  # pragma: no cover - edge_depth's depth always keeps within
            raise RuntimeError("a trace kept within its edge limit twice")
        if not rows:
            raise NotFound(_UNREADABLE.format(lot_id=lot_id))
        rows, parties = repository.party_rows(rows)  # a participant's: the policies its trace names, same statement
        if reason == "max_depth" and rows[0]["lots_cut_at"] is not None:
            max_depth, reason, limit = rows[0]["lots_cut_at"], "max_lots", reads.max_lots
        if who.is_regulator:
            opened = await repository.opened_among(
                conn,
                sorted(who.grant_lots),
                sorted(who.grant_participants),
                reads.max_depth,
                [r["lot_id"] for r in rows if not r["edge"]],
            )
            rows = [r for r in rows if r["lot_id"] in opened and (not r["edge"] or r["parent"] in opened)]
        nodes, edges, origins, cut = [], [], [], []
        smelters: dict[tuple[str, str], dict[str, Any]] = {}
        steps: dict[str, tuple[str, str, str, set[str], set[str]]] = {}  # tid -> actor, kinds, inputs, outputs
        held_now: set[str] = set()  # the lots the participant asking holds now
        rmi: dict[str, str | None] = {}  # tid -> its actor's RMI facility id (smelters and refiners)
        for r in rows:
            if not r["edge"]:
                node = {**repository.lot_out(r), "depth": r["depth"]}
                nodes.append(node)
                if r["cut"]:
                    cut.append(r["lot_id"])
                if upstream and r["origin_kind"] in ORIGIN_KINDS:
                    origins.append(node)
                if r["custodian"] == who.subject:
                    held_now.add(r["lot_id"])
                continue
            actor, tid, kind, actor_kind = r["actor"], r["transformation_id"], r["kind"], r["actor_kind"]
            rmi[tid] = r["actor_rmi"]
            edges.append(
                {
                    "parent": r["parent"],
                    "child": r["lot_id"],
                    "transformation_id": tid,
                    "kind": kind,
                    "actor": actor,
                    "actor_kind": actor_kind,
                    "mass_kg": r["mass_kg"],
                    "custody_model": r["custody_model"],
                    "withheld": [],
                }
            )
            step = steps.setdefault(tid, (actor, kind, actor_kind, set(), set()))
            step[3].add(r["parent"])  # an edge: an input lot (parent) and an output lot (child) of one transformation
            step[4].add(r["lot_id"])
        # Whoever smelted or refined on the path, as audit screens them (`shared.vocab.smelting_basis`): a smelter or
        # refiner, or anyone whose transformation is recorded as one or turns ore or concentrate into metal.
        forms = {n["lot_id"]: n["form"] for n in nodes}
        for tid, (actor, kind, actor_kind, ins, outs) in steps.items():
            basis = smelting_basis(kind, actor_kind, (forms.get(i) for i in ins), (forms.get(o) for o in outs))
            if basis is not None:
                smelters[(actor, tid)] = {
                    "participant_id": actor,
                    "kind": actor_kind,
                    "transformation_id": tid,
                    "transformation_kind": kind,
                    "screened_as_smelter_by": basis,
                    "rmi_smelter_id": rmi.get(tid),
                    "withheld": [],
                }
        products = (
            []
            if upstream
            else [
                {
                    "consumption_id": c["consumption_id"],
                    "lot_id": c["lot_id"],
                    "by": c["actor"],
                    "product_id": c["product_id"],
                    "product_name": c["product_name"],
                    "product": c["product"],
                    "mass_kg": c["mass_kg"],
                    "consumed_at": c["consumed_at"],
                    "withheld": [],
                }
                for c in await repository.consumptions_of(conn, [n["lot_id"] for n in nodes])
                if not participant or c["lot_id"] in held_now or c["actor"] == who.subject
            ]
        )
        viewer = None
        if participant:  # the identities it names, smelters and refiners aside (public)
            named: set[str | None] = {p for n in nodes for p in _lot_parties(n)}
            named.update(e["actor"] for e in edges if e["actor_kind"] not in SMELTER_KINDS)
            named.update(p["by"] for p in products)
            viewer = await _viewer(conn, who.subject, named, known=parties)
    for node in nodes:
        _lot_seen(node, viewer)
    if viewer is not None:
        for edge in edges:
            if not viewer.shows(edge["actor"], edge["actor_kind"]):
                edge["actor"], edge["withheld"] = None, ["actor"]
        for smelter in smelters.values():
            if not viewer.shows(smelter["participant_id"], smelter["kind"]):
                smelter["participant_id"], smelter["rmi_smelter_id"] = None, None
                smelter["withheld"] = ["participant_id", "rmi_smelter_id"]
        for product in products:
            if not viewer.shows(product["by"]):  # its product id is scoped by its prefix: withheld with it
                product["by"] = product["product_id"] = product["product_name"] = None
                product["withheld"] = ["by", "product_id", "product_name"]
    return {
        "lot_id": lot_id,
        "direction": "upstream" if upstream else "downstream",
        "nodes": nodes,
        "edges": edges,
        "origins": origins,
        "smelters": list(smelters.values()),
        "products": products,
        "truncated": truncated(max_depth, cut, reason=reason, limit=limit),
    }
