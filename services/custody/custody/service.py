"""Custody use cases: load (and lock), apply the domain rules, record what changes on the unit of work, answer.

Every write is an `attempt` run by `custody.unit_of_work.Write`, which owns the rest: the Idempotency-Key, the
attempt without locks and the retry under them, the refusal record, writing it all with the answer, waking the
relay. An attempt never writes; a `Refusal` it raises leaves only the refusal's record behind. Reads run on a
pooled connection and apply `shared.visibility` (who may see a lot) before answering.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from custody import domain, repository, schemas
from custody.domain import LotStatus, NewLot, OriginKind
from custody.unit_of_work import Answer, UnitOfWork, Write
from shared.auth import Principal, refuse_regulator
from shared.events import format_time
from shared.genealogy import Reason, edge_depth, truncated
from shared.iso import current_region, is_region
from shared.problems import Forbidden, InvalidInput, NotFound, ServiceUnavailable
from shared.vocab import smelting_basis

GRAM = Decimal("0.001")


def _participant_only(who: Principal, verb: str) -> None:
    refuse_regulator(who, verb)
    if who.is_operator:
        raise Forbidden(
            f"The operator token cannot {verb}: custody operations are done by participants with their own token."
        )


async def _me(uow: UnitOfWork, who: Principal, *, cached: bool = False) -> repository.ParticipantRow:
    """The caller as custody knows it (from `registry.events`): from the cache when `cached` and it is there (its
    version is checked where it is used), else read (and cached)."""
    me = uow.participants.get(who.subject) if cached and uow.participants is not None else None
    if me is None:
        me = await repository.participant(uow.conn, who.subject)
        if me is None:
            raise ServiceUnavailable("Your registration has not reached the custody service yet; retry in a moment.")
        if uow.participants is not None:
            uow.participants.put(me)
    return me


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16].upper()}"


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


async def register_lot(*, write: Write, body: schemas.LotCreate) -> Answer:
    """A mine registers an origin lot. Without locks, the mine comes from the participants cache: the statement
    writes only if the mine's version is still the one cached (`repository.PERSIST_NEW_LOT`)."""
    who = write.who

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
            lot_id=body.lot_id or _new_id("LOT"),
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
        region = None
        if o.region:
            region = current_region(o.region)
            if not is_region(region) or not region.startswith(o.country + "-"):
                raise InvalidInput("body.origin.region", f"{o.region!r} is not an ISO 3166-2 region of {o.country}")
        if o.participant_id is not None:
            await _named_mine(uow, me, o.participant_id, o.country)
        new = NewLot(
            lot_id=body.lot_id or _new_id("EXT"),
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
                f"{lot_id} names {'no mine' if found.named_mine is None else 'another participant'}."
            )
        lot, at = found.lot, datetime.now(UTC)
        data = {"confirmed": body.confirmed, "note": body.note, "mine": who.subject}
        uow.append(lot, type="custody.lot.origin_confirmed", occurred_at=at, actor=who.subject, data=data)
        uow.touched(lot)
        event_id = lot.new_events[-1][0]
        uow.changes.origin_confirmation = (lot_id, who.subject, body.confirmed, body.note, at, event_id)
        return {
            "lot_id": lot_id,
            "mine": who.subject,
            "confirmed": body.confirmed,
            "note": body.note,
            "answered_at": at,
            "event_id": event_id,
        }

    return await write.run(
        action="confirm_origin", subject=lot_id, attempt=attempt, model=schemas.OriginConfirmation, status=200
    )


async def ship(*, write: Write, lot_id: str, body: schemas.ShipmentCreate) -> Answer:
    """The holder ships (part of) a lot to another participant; checked on the lot as read, or under its lock."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "ship lots")
        lot, to_kind = await repository.lot_for_update_and_party(uow.conn, lot_id, body.to, lock=uow.locked)
        if lot is None:
            raise NotFound(f"No lot {lot_id!r}.")
        if to_kind is None:
            raise InvalidInput("body.to", f"{body.to!r} is not a registered participant")
        domain.check_ship(lot.state, who.subject, body.to, body.mass_kg)
        shipment_id = _new_id("SHP")
        uow.changes.shipment = (
            shipment_id,
            lot_id,
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
            "lot_id": lot_id,
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

    return await write.run(action="ship", subject=lot_id, attempt=attempt, model=schemas.Shipment, optimistic=True)


async def receive(*, write: Write, shipment_id: str, body: schemas.ReceiptCreate) -> Answer:
    """The addressee receives a shipment and becomes the lot's custodian; checked on the shipment and lot as read,
    or under their locks."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "receive shipments")
        found = await repository.shipment_and_lot_for_update(uow.conn, shipment_id, lock=uow.locked)
        if found is None:
            raise NotFound(f"No shipment {shipment_id!r}.")
        state, row, lot = found
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


async def transform(*, write: Write, body: schemas.TransformationCreate) -> Answer:
    """The holder transforms lots (smelt, refine, alloy, split, merge...): inputs drawn, output lots made. The
    transformation is stored once (a row, and a row per input and per output: n + m, never n x m) and published once
    (`custody.transformation.recorded`, with both lists); each lot's own event (`custody.lot.transformed`) says what
    happened to that lot and refers to the transformation by id and digest. An output id taken already refuses the
    whole transformation."""
    check_transformation(body)  # before the key, the locks or anything else
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "transform lots")
        me = await _me(uow, who)
        input_ids = [d.lot_id for d in body.inputs]
        lots = await repository.lots_for_update(uow.conn, input_ids)
        for i, d in enumerate(body.inputs):
            if d.lot_id not in lots:
                raise NotFound(f"No lot {d.lot_id!r} (inputs.{i}).")
        for d in body.inputs:
            lot = lots[d.lot_id]
            domain.check_can_act(lot.state, who.subject, "transform")
            domain.check_mass(lot.state, d.mass_kg, "draw")
        transformation_id = _new_id("TRF")
        made = [
            NewLot(
                lot_id=o.lot_id or _new_id("LOT"),
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
            for o in body.outputs
        ]
        outputs = [uow.new_lot(new) for new in made]
        drawn = [lots[d.lot_id] for d in body.inputs]
        inputs_data = []  # the answer's, with the masses before and after
        for d, lot in zip(body.inputs, drawn, strict=True):
            before = lot.remaining_kg
            lot.remaining_kg, lot.status = domain.after_draw(lot.state, d.mass_kg, LotStatus.depleted)
            inputs_data.append(
                {
                    "lot_id": d.lot_id,
                    "mineral": lot.mineral,
                    "form": lot.form,
                    "mass_kg": _mass(d.mass_kg),
                    "remaining_before_kg": _mass(before),
                    "remaining_after_kg": _mass(lot.remaining_kg),
                }
            )
        header = {
            "transformation_id": transformation_id,
            "kind": body.kind.value,
            "by": me.id,
            "by_kind": me.kind,
            "by_country": me.country,
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
            [(d.lot_id, d.mass_kg) for d in body.inputs],
            [n.lot_id for n in made],
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
            "inputs": inputs_data,
            "outputs": [
                repository.new_lot_out(new, uow.created_at, lot) for new, lot in zip(made, outputs, strict=True)
            ],
        }

    return await write.run(
        action="transform", subject=body.inputs[0].lot_id, attempt=attempt, model=schemas.Transformation
    )


async def consume(*, write: Write, lot_id: str, body: schemas.ConsumptionCreate) -> Answer:
    """The holder consumes (part of) a lot into a product."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who, "consume lots")
        lot = await repository.lot_for_update(uow.conn, lot_id)
        if lot is None:
            raise NotFound(f"No lot {lot_id!r}.")
        domain.check_can_act(lot.state, who.subject, "consume")
        domain.check_mass(lot.state, body.mass_kg, "consume")
        consumption_id = _new_id("CNS")
        lot.remaining_kg, lot.status = domain.after_draw(lot.state, body.mass_kg, LotStatus.consumed)
        uow.changes.consumption = (consumption_id, lot_id, who.subject, body.product, body.mass_kg, body.consumed_at)
        uow.touched(lot)
        uow.append(
            lot,
            type="custody.lot.consumed",
            occurred_at=body.consumed_at,
            actor=who.subject,
            data={
                "consumption_id": consumption_id,
                "by": who.subject,
                "product": body.product,
                "mass_kg": _mass(body.mass_kg),
                "remaining_after_kg": _mass(lot.remaining_kg),
                "mineral": lot.mineral,
                "form": lot.form,
            },
        )
        return {
            "consumption_id": consumption_id,
            "lot_id": lot_id,
            "product": body.product,
            "mass_kg": body.mass_kg,
            "consumed_at": body.consumed_at,
            "remaining_kg": lot.remaining_kg,
            "status": lot.status,
        }

    return await write.run(action="consume", subject=lot_id, attempt=attempt, model=schemas.Consumption)


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


async def _readable(conn: asyncpg.Connection, who: Principal, lot_id: str, max_depth: int) -> asyncpg.Record:
    r = await repository.get_lot(conn, lot_id)
    if r is None or not (who.is_operator or await repository.may_read(conn, lot_id, who.subject, max_depth)):
        raise NotFound(_UNREADABLE.format(lot_id=lot_id))
    return r


async def get_lot(*, reads: Reads, who: Principal, lot_id: str) -> dict[str, Any]:
    async with reads.pool.acquire() as conn:
        return repository.lot_out(await _readable(conn, who, lot_id, reads.max_depth))


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
    """Lots the caller holds or held (the operator: all), oldest first."""
    async with reads.pool.acquire() as conn:
        rows = await repository.list_lots(
            conn,
            holder=None if who.is_operator else who.subject,
            custodian=custodian,
            mineral=mineral,
            status=status,
            after=after,
            limit=limit + 1,
        )
    return schemas.LotPage(
        items=[schemas.Lot.model_validate(repository.lot_out(r)) for r in rows[:limit]],
        next_cursor=str(rows[limit - 1]["created_seq"]) if len(rows) > limit else None,
    )


async def history(*, reads: Reads, who: Principal, lot_id: str) -> dict[str, Any]:
    """Every event of a lot's chain, in order, each as `who` may see it (`domain.disclose_event`: a withheld field
    shows only as its salted digest), and whether the chain of what is shown verifies (recomputed here from the
    digests, so withholding cannot break it)."""
    async with reads.pool.acquire() as conn:
        await _readable(conn, who, lot_id, reads.max_depth)
        rows = await repository.history(conn, lot_id)
    events, triples = [], []
    for r in rows:
        stored = dict(r)
        stored["data"], stored["salts"] = orjson.loads(r["data"]), r["salts"] and orjson.loads(r["salts"])
        item = domain.disclose_event(stored, _withheld(who, stored))
        triples.append((stored["prev_hash"], stored["hash"], domain.shown_body(lot_id, item)))
        events.append(item)
    return {"lot_id": lot_id, "events": events, "chain_valid": domain.verify_chain(triples) is None}


def _withheld(who: Principal, stored: dict[str, Any]) -> frozenset[str]:
    """The fields of a stored event `who` may not see (its digests are shown instead): none yet."""
    return frozenset()


async def trace(*, reads: Reads, who: Principal, lot_id: str, upstream: bool) -> dict[str, Any]:
    """The trace in the documented shape (`schemas.Trace`), from one statement (two downstream, with products).

    At most `reads.max_lots` lots and `reads.max_edges` edges: the walk stops before the step that would pass the
    lots (in the statement), and a trace whose edges would pass theirs is not built but counted, then taken again to
    the deepest depth that keeps within (`repository._trace_sql`, `shared.genealogy.edge_depth`): one more
    statement, only then. Either way `truncated` says why, the limit, and at which lots it stopped."""
    max_depth, limit = reads.max_depth, None
    reason: Reason = "max_depth"
    async with reads.pool.acquire() as conn:
        if not who.is_operator and not await repository.may_read(conn, lot_id, who.subject, reads.max_depth):
            raise NotFound(_UNREADABLE.format(lot_id=lot_id))
        for _ in range(3):  # the first answer, or its counts; at most a re-take (and one more, if ever needed)
            rows = await repository.trace_rows(
                conn,
                lot_id,
                upstream=upstream,
                max_depth=max_depth,
                max_lots=reads.max_lots,
                max_edges=reads.max_edges,
                participant=None if who.is_operator else who.subject,
            )
            if not rows or rows[0]["edge"] is not None:
                break
            counts = [(r["transformation_id"], r["parent"] == "in", r["depth"], int(r["mass_kg"])) for r in rows]
            max_depth, reason, limit = edge_depth(counts, reads.max_edges, max_depth), "max_edges", reads.max_edges
        else:  # pragma: no cover - edge_depth's depth always keeps within
            raise RuntimeError("a trace kept within its edge limit twice")
        if not rows:
            raise NotFound(_UNREADABLE.format(lot_id=lot_id))
        if reason == "max_depth" and rows[0]["lots_cut_at"] is not None:
            max_depth, reason, limit = rows[0]["lots_cut_at"], "max_lots", reads.max_lots
        nodes, edges, origins, cut = [], [], [], []
        smelters: dict[tuple[str, str], dict[str, Any]] = {}
        steps: dict[str, tuple[str, str, str, set[str], set[str]]] = {}  # tid -> actor, kinds, inputs, outputs
        for r in rows:
            if not r["edge"]:
                node = {**repository.lot_out(r), "depth": r["depth"]}
                nodes.append(node)
                if r["cut"]:
                    cut.append(r["lot_id"])
                if upstream and r["origin_kind"] in ("mine", "external"):
                    origins.append(node)
                continue
            actor, tid, kind, actor_kind = r["actor"], r["transformation_id"], r["kind"], r["actor_kind"]
            edges.append(
                {
                    "parent": r["parent"],
                    "child": r["lot_id"],
                    "transformation_id": tid,
                    "kind": kind,
                    "actor": actor,
                    "actor_kind": actor_kind,
                    "mass_kg": r["mass_kg"],
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
                }
        products = (
            []
            if upstream
            else [
                {
                    "consumption_id": c["consumption_id"],
                    "lot_id": c["lot_id"],
                    "by": c["actor"],
                    "product": c["product"],
                    "mass_kg": c["mass_kg"],
                    "consumed_at": c["consumed_at"],
                }
                for c in await repository.consumptions_of(conn, [n["lot_id"] for n in nodes])
            ]
        )
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
