"""Custody use cases: load and lock, apply the domain rules, write rows, chain events and outbox rows. Never
commits: the router owns the transaction. A `Refusal` raised here happens before anything is written (or inside a
savepoint the router rolls back), so a refused request leaves only its rejection record behind."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from custody import domain, repository, schemas
from custody.domain import LotStatus, OriginKind, Refusal
from custody.repository import LotRow, NewLot
from shared.auth import Principal
from shared.events import CloudEvent, dataschema_for, format_time
from shared.iso import current_region, is_region
from shared.outbox import enqueue_raw
from shared.problems import Forbidden, InvalidInput, NotFound, ServiceUnavailable
from shared.topics import CUSTODY_EVENTS

SOURCE = "/custody"


@dataclass
class Outbox:
    """Events of one request, written together at the end."""

    events: list[CloudEvent] = field(default_factory=list)

    def add(
        self, type: str, key: str, data: dict[str, Any], *, event_id: str | None = None, time: datetime | None = None
    ) -> None:
        kw: dict[str, Any] = {"id": event_id} if event_id else {}
        if time is not None:
            kw["time"] = time
        self.events.append(
            CloudEvent(type=type, source=SOURCE, subject=key, key=key, data=data, dataschema=dataschema_for(type), **kw)
        )

    def chained(self, lot: LotRow, type: str, data: dict[str, Any]) -> None:
        """A lot event already appended to the lot's chain: the CloudEvent id is the chain event's id."""
        self.add(type, lot.lot_id, data, event_id=data["event_id"])

    async def flush(self, conn: asyncpg.Connection) -> None:
        await enqueue_raw(conn, CUSTODY_EVENTS, self.events)
        self.events.clear()


def _participant_only(who: Principal, verb: str) -> None:
    if who.is_operator:
        raise Forbidden(
            f"The operator token cannot {verb}: custody operations are done by participants with their own token."
        )


async def _known(conn: asyncpg.Connection, who: Principal) -> repository.ParticipantRow:
    me = await repository.participant(conn, who.subject)
    if me is None:
        raise ServiceUnavailable("Your registration has not reached the custody service yet; retry in a moment.")
    return me


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16].upper()}"


GRAM = Decimal("0.001")


def _mass(v: Decimal) -> str:
    """Masses in events: decimal strings with exactly 3 decimals (kg to the gram), never binary floats."""
    return format(v.quantize(GRAM), "f")


async def register_lot(
    conn: asyncpg.Connection,
    who: Principal,
    body: schemas.LotCreate,
    pending: repository.Pending,
    *,
    lock: bool = True,
    participants: repository.ParticipantCache | None = None,
) -> dict[str, Any]:
    """Checks and the new lot row; the chain, holder and event go to `pending` (written with the router's answer).
    With `lock=False` the lot row goes there too, for `repository.persist_unless_changed` to insert with the rest;
    the registering mine then comes from `participants` if cached there (that statement checks its version). Under
    the locks it is always read, and cached again."""
    _participant_only(who, "register lots")
    if who.kind != "mine":
        raise Forbidden(
            f"Only mines register origin lots (you are a {who.kind}); declare material from outside "
            "the system with POST /lots/external."
        )
    me = participants.get(who.subject) if participants is not None and not lock else None
    if me is None:
        me = await _known(conn, who)
        if participants is not None:
            participants.put(me)
    lot_id = body.lot_id or _new_id("LOT")
    new = NewLot(
        lot_id=lot_id,
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
    )
    if lock:
        inserted = await repository.insert_lot_only(conn, new)
        if inserted is None:
            raise Refusal("lot_exists", f"Lot {lot_id} already exists; lot ids are unique.")
        lot, row = inserted
    else:
        created_at = datetime.now(UTC)
        lot, row = repository.new_lot_row(new, created_at)
        pending.new_lot = new, created_at, (me.id, me.version)
    out = Outbox()
    data = lot.append(
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
            },
        },
    )
    out.chained(lot, "custody.lot.registered", data)
    pending.lots.append(lot)
    pending.events.extend(out.events)
    pending.new_holder = me.id
    return {**repository.lot_out(row), "events": lot.event_count, "head_hash": lot.head_hash.hex()}


async def declare_external(
    conn: asyncpg.Connection, who: Principal, body: schemas.ExternalDeclaration
) -> dict[str, Any]:
    _participant_only(who, "declare material")
    me = await _known(conn, who)
    o = body.origin
    region = None
    if o.region:
        region = current_region(o.region)
        if not is_region(region) or not region.startswith(o.country + "-"):
            raise InvalidInput("body.origin.region", f"{o.region!r} is not an ISO 3166-2 region of {o.country}")
    lot_id = body.lot_id or _new_id("EXT")
    lot = await repository.insert_lot(
        conn,
        NewLot(
            lot_id=lot_id,
            mineral=body.mineral.value,
            form=body.form.value,
            mass_kg=body.mass_kg,
            custodian=me.id,
            origin_kind=OriginKind.external.value,
            origin_participant=o.participant_id,
            origin_country=o.country,
            origin_region=region,
            origin_mine_name=o.mine_name,
            produced_at=None,
            tag=body.tag,
            seal=body.seal,
        ),
    )
    if lot is None:
        raise Refusal("lot_exists", f"Lot {lot_id} already exists; lot ids are unique.")
    out = Outbox()
    data = lot.append(
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
            },
            "supplier": body.supplier.model_dump(),
        },
    )
    out.chained(lot, "custody.lot.external_declared", data)
    await repository.save_lots(conn, [lot])
    await out.flush(conn)
    return await _lot(conn, lot_id)


async def ship(
    conn: asyncpg.Connection,
    who: Principal,
    lot_id: str,
    body: schemas.ShipmentCreate,
    pending: repository.Pending,
    *,
    lock: bool = True,
) -> dict[str, Any]:
    """Checks under the lot's lock (or on the lot as read, `lock=False`, for `repository.persist_unless_changed`);
    the writes go to `pending` (the router writes them with its answer)."""
    _participant_only(who, "ship lots")
    lot, to_kind = await repository.lot_for_update_and_party(conn, lot_id, body.to, lock=lock)
    if lot is None:
        raise NotFound(f"No lot {lot_id!r}.")
    if to_kind is None:
        raise InvalidInput("body.to", f"{body.to!r} is not a registered participant")
    domain.check_ship(lot.state, who.subject, body.to, body.mass_kg)
    shipment_id = _new_id("SHP")
    pending.shipment = (
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
    remaining_before = lot.remaining_kg
    lot.status = LotStatus.in_transit
    out = Outbox()
    data = lot.append(
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
            "transit_countries": body.transit_countries,
            "max_transit_days": body.max_transit_days,
            "mineral": lot.mineral,
            "form": lot.form,
        },
    )
    out.chained(lot, "custody.lot.shipped", data)
    pending.lots.append(lot)
    pending.events.extend(out.events)
    return {
        "shipment_id": shipment_id,
        "lot_id": lot_id,
        "from_participant": who.subject,
        "to": body.to,
        "mass_kg": body.mass_kg,
        "shipped_at": body.shipped_at,
        "seal": body.seal,
        "transit_countries": body.transit_countries,
        "max_transit_days": body.max_transit_days,
        "status": "in_transit",
        "received_at": None,
        "received_mass_kg": None,
        "received_seal": None,
    }


async def receive(
    conn: asyncpg.Connection,
    who: Principal,
    shipment_id: str,
    body: schemas.ReceiptCreate,
    pending: repository.Pending,
    *,
    lock: bool = True,
) -> dict[str, Any]:
    """Checks under the shipment's and the lot's locks (or as read, `lock=False`); the writes go to `pending`."""
    _participant_only(who, "receive shipments")
    found = await repository.shipment_and_lot_for_update(conn, shipment_id, lock=lock)
    if found is None:
        raise NotFound(f"No shipment {shipment_id!r}.")
    state, row, lot = found
    domain.check_receive(state, who.subject)
    pending.receipt = (shipment_id, body.received_at, body.mass_kg, body.seal)
    lot.custodian, lot.status, lot.remaining_kg = who.subject, LotStatus.active, body.mass_kg
    out = Outbox()
    data = lot.append(
        type="custody.lot.received",
        occurred_at=body.received_at,
        actor=who.subject,
        data={
            "shipment_id": shipment_id,
            "by": who.subject,
            "mass_kg": _mass(body.mass_kg),
            "seal": body.seal,
            "shipped": {
                "from": row["from_participant"],
                "mass_kg": _mass(row["mass_kg"]),
                "shipped_at": format_time(row["shipped_at"]),
                "seal": row["seal"],
                "max_transit_days": row["max_transit_days"],
            },
            "mineral": lot.mineral,
            "form": lot.form,
        },
    )
    out.chained(lot, "custody.lot.received", data)
    pending.lots.append(lot)
    pending.events.extend(out.events)
    pending.new_holder = who.subject
    return repository.shipment_out(
        {
            **row,
            "status": "received",
            "received_at": body.received_at,
            "received_mass_kg": body.mass_kg,
            "received_seal": body.seal,
        }
    )


def _duplicates(ids: Sequence[str | None], where: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(ids):
        if v is None:
            continue
        if v in seen:
            raise InvalidInput(f"body.{where}.{i}.lot_id", f"lot {v} is listed twice")
        seen.add(v)


async def transform(conn: asyncpg.Connection, who: Principal, body: schemas.TransformationCreate) -> dict[str, Any]:
    """Run inside a savepoint: output lot ids are claimed before inputs are drawn."""
    _participant_only(who, "transform lots")
    me = await _known(conn, who)
    _duplicates([d.lot_id for d in body.inputs], "inputs")
    _duplicates([o.lot_id for o in body.outputs], "outputs")
    input_ids = [d.lot_id for d in body.inputs]
    for i, o in enumerate(body.outputs):
        if o.lot_id in input_ids:
            raise InvalidInput(f"body.outputs.{i}.lot_id", f"lot {o.lot_id} is also an input")
    lots = await repository.lots_for_update(conn, input_ids)
    for i, d in enumerate(body.inputs):
        if d.lot_id not in lots:
            raise NotFound(f"No lot {d.lot_id!r} (inputs.{i}).")
    for d in body.inputs:
        lot = lots[d.lot_id]
        domain.check_can_act(lot.state, who.subject, "transform")
        domain.check_mass(lot.state, d.mass_kg, "draw")
    transformation_id = _new_id("TRF")
    outputs: list[LotRow] = []
    for o in body.outputs:
        lot_id = o.lot_id or _new_id("LOT")
        row = await repository.insert_lot(
            conn,
            NewLot(
                lot_id=lot_id,
                mineral=o.mineral.value,
                form=o.form.value,
                mass_kg=o.mass_kg,
                custodian=me.id,
                origin_kind=OriginKind.transformation.value,
                origin_participant=me.id,
                origin_country=me.country,
                origin_region=me.region,
                produced_at=body.occurred_at,
            ),
        )
        if row is None:
            raise Refusal("lot_exists", f"Lot {lot_id} already exists; output lot ids must be new.")
        outputs.append(row)
    inputs_data = []
    for d in body.inputs:
        lot = lots[d.lot_id]
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
    outputs_data = [
        {"lot_id": r.lot_id, "mineral": r.mineral, "form": r.form, "mass_kg": _mass(o.mass_kg)}
        for r, o in zip(outputs, body.outputs, strict=True)
    ]
    await repository.insert_transformation(
        conn,
        transformation_id=transformation_id,
        kind=body.kind.value,
        actor=me.id,
        actor_kind=me.kind,
        occurred_at=body.occurred_at,
        inputs=inputs_data,
        outputs=outputs_data,
    )
    await repository.insert_genealogy(
        conn, [(d.lot_id, r.lot_id, transformation_id, d.mass_kg) for d in body.inputs for r in outputs]
    )
    common = {
        "transformation_id": transformation_id,
        "kind": body.kind.value,
        "by": me.id,
        "by_kind": me.kind,
        "by_country": me.country,
        "inputs": inputs_data,
        "outputs": outputs_data,
    }
    out = Outbox()
    for role, group in (("input", [lots[d.lot_id] for d in body.inputs]), ("output", outputs)):
        for lot in group:
            data = lot.append(
                type="custody.lot.transformed", occurred_at=body.occurred_at, actor=me.id, data={**common, "role": role}
            )
            out.chained(lot, "custody.lot.transformed", data)
    await repository.save_lots(conn, [lots[d.lot_id] for d in body.inputs])
    await repository.save_lots(conn, outputs)
    await out.flush(conn)
    made = await repository.get_lots(conn, [r.lot_id for r in outputs])
    order = {r.lot_id: i for i, r in enumerate(outputs)}
    return {
        "transformation_id": transformation_id,
        "kind": body.kind,
        "actor": me.id,
        "occurred_at": body.occurred_at,
        "inputs": inputs_data,
        "outputs": [repository.lot_out(r) for r in sorted(made, key=lambda r: order[r["lot_id"]])],
    }


async def consume(
    conn: asyncpg.Connection, who: Principal, lot_id: str, body: schemas.ConsumptionCreate
) -> dict[str, Any]:
    _participant_only(who, "consume lots")
    lot = await repository.lot_for_update(conn, lot_id)
    if lot is None:
        raise NotFound(f"No lot {lot_id!r}.")
    domain.check_can_act(lot.state, who.subject, "consume")
    domain.check_mass(lot.state, body.mass_kg, "consume")
    consumption_id = _new_id("CNS")
    lot.remaining_kg, lot.status = domain.after_draw(lot.state, body.mass_kg, LotStatus.consumed)
    await repository.insert_consumption(
        conn,
        consumption_id=consumption_id,
        lot_id=lot_id,
        actor=who.subject,
        product=body.product,
        mass_kg=body.mass_kg,
        consumed_at=body.consumed_at,
    )
    out = Outbox()
    data = lot.append(
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
    out.chained(lot, "custody.lot.consumed", data)
    await repository.save_lots(conn, [lot])
    await out.flush(conn)
    return {
        "consumption_id": consumption_id,
        "lot_id": lot_id,
        "product": body.product,
        "mass_kg": body.mass_kg,
        "consumed_at": body.consumed_at,
        "remaining_kg": lot.remaining_kg,
        "status": lot.status,
    }


async def record_refusal(
    conn: asyncpg.Connection, who: Principal, *, action: str, subject: str | None, refusal: Refusal, request: Any
) -> str:
    """Keep and publish a refused attempt (custody.attempt.rejected); returns the event id."""
    out = Outbox()
    event_id = str(uuid.uuid4())
    await repository.insert_rejection(
        conn,
        event_id=event_id,
        actor=who.subject,
        action=action,
        subject=subject,
        reason=refusal.reason,
        detail=refusal.detail,
        request=request,
    )
    out.add(
        "custody.attempt.rejected",
        subject or who.subject,
        {
            "actor": who.subject,
            "actor_kind": who.kind,
            "action": action,
            "subject": subject,
            "reason": refusal.reason,
            "detail": refusal.detail,
            "request": request,
        },
        event_id=event_id,
    )
    await out.flush(conn)
    return event_id


async def _lot(conn: asyncpg.Connection, lot_id: str) -> dict[str, Any]:
    r = await repository.get_lot(conn, lot_id)
    assert r is not None
    return repository.lot_out(r)


# --- reads ------------------------------------------------------------------------------------------------


_UNREADABLE = "No lot {lot_id!r} that you may read (you may read the lots you hold or held, and their upstream)."


async def readable_lot(conn: asyncpg.Connection, who: Principal, lot_id: str, max_depth: int) -> asyncpg.Record:
    r = await repository.get_lot(conn, lot_id)
    if r is None or not (who.is_operator or await repository.may_read(conn, lot_id, who.subject, max_depth)):
        raise NotFound(_UNREADABLE.format(lot_id=lot_id))
    return r


async def history(conn: asyncpg.Connection, who: Principal, lot_id: str, max_depth: int) -> dict[str, Any]:
    await readable_lot(conn, who, lot_id, max_depth)
    import orjson

    rows = await repository.history(conn, lot_id)
    events, triples = [], []
    for r in rows:
        data = orjson.loads(r["data"])
        body = {
            "event_id": r["event_id"],
            "lot_id": r["lot_id"],
            "seq": r["seq"],
            "type": r["type"],
            "occurred_at": format_time(r["occurred_at"]),
            "actor": r["actor"],
            "data": data,
        }
        triples.append((bytes(r["prev_hash"]), bytes(r["hash"]), body))
        events.append(
            {
                "seq": r["seq"],
                "event_id": r["event_id"],
                "type": r["type"],
                "occurred_at": r["occurred_at"],
                "recorded_at": r["recorded_at"],
                "actor": r["actor"],
                "data": data,
                "prev_hash": bytes(r["prev_hash"]).hex(),
                "hash": bytes(r["hash"]).hex(),
            }
        )
    return {"lot_id": lot_id, "events": events, "chain_valid": domain.verify_chain(triples) is None}


async def trace(
    conn: asyncpg.Connection, who: Principal, lot_id: str, *, upstream: bool, max_depth: int
) -> dict[str, Any]:
    """The trace in the documented shape (`schemas.Trace`), from one statement (two downstream, with products)."""
    if not who.is_operator and not await repository.may_read(conn, lot_id, who.subject, max_depth):
        raise NotFound(_UNREADABLE.format(lot_id=lot_id))
    rows = await repository.trace_rows(
        conn, lot_id, upstream=upstream, max_depth=max_depth, participant=None if who.is_operator else who.subject
    )
    if not rows:
        raise NotFound(_UNREADABLE.format(lot_id=lot_id))
    nodes, edges, origins = [], [], []
    smelters: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if not r["edge"]:
            node = {**repository.lot_out(r), "depth": r["depth"]}
            nodes.append(node)
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
        if actor_kind in ("smelter", "refiner"):
            smelters[(actor, tid)] = {
                "participant_id": actor,
                "kind": actor_kind,
                "transformation_id": tid,
                "transformation_kind": kind,
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
    }
