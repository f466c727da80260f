"""Every query of the custody service, as SQL on the asyncpg connection of the request's transaction.

Writes are the hot path (ship/receive at thousands per second), so statements are plain SQL that asyncpg prepares
once per connection and reuses; no ORM objects are built per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import orjson

from custody.domain import LOT_PREFIX_ALPHABET, LOT_PREFIX_LENGTH, Lot, LotStatus, NewLot, ShipmentState
from shared.events import CloudEvent
from shared.genealogy import goes_on_sql, walk_sql
from shared.outbox import outbox_columns
from shared.tracing import current_traceparent
from shared.visibility import grant_lots_sql, grant_opens_lot_sql, lot_visible_sql

Conn: TypeAlias = asyncpg.Connection


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


# --- participants projection -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    id: str
    kind: str
    name: str
    country: str
    region: str | None
    mining_type: str | None
    version: int  # the registry's version of the participant (bumped by every change)
    lot_prefix: str  # the lots it creates are `<lot_prefix>:<local id>` (`domain.scoped_lot_id`)


async def participant(conn: Conn, participant_id: str) -> ParticipantRow | None:
    r = await conn.fetchrow(
        "SELECT id, kind, name, country, region, mining_type, version, lot_prefix FROM participants WHERE id = $1",
        participant_id,
    )
    return ParticipantRow(**dict(r)) if r else None


class ParticipantCache:
    """Participants as last read, for registrations without locks: their statement writes only if the participant's
    version is still the one cached (`PERSIST_NEW_LOT`'s gate), so a stale entry costs a retry under the locks (which
    reads the row again and puts it here), never a lot with an outdated origin. Saves a round trip per registration.
    Bounded: when full, it is emptied and fills again from the requests that follow."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._rows: dict[str, ParticipantRow] = {}

    def get(self, participant_id: str) -> ParticipantRow | None:
        return self._rows.get(participant_id)

    def put(self, row: ParticipantRow) -> None:
        if len(self._rows) >= self.max_entries and row.id not in self._rows:
            self._rows.clear()
        self._rows[row.id] = row


NEW_LOT_PREFIX = (
    f"(SELECT string_agg(substr('{LOT_PREFIX_ALPHABET}', 1 + floor(random() * 32)::int, 1), '') "
    f"FROM generate_series(1, {LOT_PREFIX_LENGTH}))"
)
"""SQL: a new participant's lot-id prefix (`domain.new_lot_prefix`'s alphabet and length), drawn in the statement
that first stores the participant; unique in the table (a draw that collides, about one in 10^12 per pair, fails
the consumer's batch, which is delivered again and draws anew)."""

UPSERT_PARTICIPANT = f"""
INSERT INTO participants (id, kind, name, country, region, mining_type, version, updated_at, lot_prefix, disclosure,
                          rmi_smelter_id, gln)
VALUES ($1, $2, $3, $4, $5, $6, $7, now(), {NEW_LOT_PREFIX}, $8, $9, $10)
ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, country = EXCLUDED.country,
  region = EXCLUDED.region, mining_type = EXCLUDED.mining_type, version = EXCLUDED.version, updated_at = now(),
  disclosure = EXCLUDED.disclosure, rmi_smelter_id = EXCLUDED.rmi_smelter_id, gln = EXCLUDED.gln
WHERE participants.version <= EXCLUDED.version
"""
"""The lot-id prefix is drawn for a new participant only, and never changed after (an update leaves it). $8: its
disclosure policy (null: none on record, the default); $9: its RMI facility id (smelters and refiners); $10: its
GLN (EPCIS capture names parties by it), or null."""


# --- lots and their hash chain ---------------------------------------------------------------------------


def lot_named(sent: str, caller: str) -> str:
    """SQL: the lot ids a lot named `sent` (an SQL text expression) by participant `caller` may have, best first:
    a bare id (no `:`) is the caller's own `<prefix>:<id>` first, then the exact id (a lot from before ids were
    scoped); an id with a `:` is the exact id only. In the statement that fetches the lot, so naming a lot by its
    bare id costs no round trip (the caller's prefix is one primary-key probe, an InitPlan run once)."""
    return (
        f"ARRAY[CASE WHEN strpos({sent}, ':') = 0 THEN "
        f"(SELECT p.lot_prefix FROM participants p WHERE p.id = {caller}) || ':' || {sent} END, {sent}]"
    )


LOT_NAMED = f"""
SELECT l.lot_id FROM lots l WHERE l.lot_id = ANY({lot_named("$1::text", "$2::text")})
ORDER BY l.lot_id = $1::text LIMIT 1
"""


async def resolve_lot_id(conn: Conn, sent: str, caller: str) -> str:
    """The id of the lot a participant names `sent` by (`lot_named`: a bare id is its own lot first), or `sent`
    itself when there is none; whether the caller may read it is decided after, alike for both."""
    found: str | None = await conn.fetchval(LOT_NAMED, sent, caller)
    return found or sent


def _seen(caller: str) -> str:
    """SQL, on a lot `l`: whether `caller` may see it as a writer does, i.e. holds or ever held it. A write about a
    lot the caller may not see is answered as one about a lot that does not exist (no oracles)."""
    return (
        f"(l.custodian = {caller} OR EXISTS "
        f"(SELECT 1 FROM lot_holders h WHERE h.lot_id = l.lot_id AND h.participant_id = {caller})) AS seen"
    )


LOT_COLUMNS_FOR_UPDATE = (
    "l.lot_id, l.mineral, l.form, l.custodian, l.status, l.remaining_kg, l.head_hash, l.event_count"
)

LOT_FOR_UPDATE = f"""
SELECT {LOT_COLUMNS_FOR_UPDATE}, {_seen("$2::text")}
FROM lots l WHERE l.lot_id = ANY({lot_named("$1::text", "$2::text")})
ORDER BY l.lot_id = $1::text LIMIT 1 FOR UPDATE OF l
"""


def lot_of_row(r: asyncpg.Record) -> Lot:
    """A lot as the write paths hold it, from a row with `LOT_COLUMNS_FOR_UPDATE`'s columns."""
    return Lot(
        r["lot_id"],
        r["mineral"],
        r["form"],
        r["custodian"],
        LotStatus(r["status"]),
        r["remaining_kg"],
        r["head_hash"],
        r["event_count"],
    )


async def lot_for_update(conn: Conn, lot_id: str, caller: str) -> Lot | None:
    """The lot `caller` names `lot_id` (`lot_named`), locked; None when there is none or the caller may not see it
    (never held it): the same answer, from the same statement."""
    r = await conn.fetchrow(LOT_FOR_UPDATE, lot_id, caller)
    return None if r is None or not r["seen"] else lot_of_row(r)


LOT_AND_PRODUCT_FOR_UPDATE = f"""
SELECT {LOT_COLUMNS_FOR_UPDATE}, {_seen("$2::text")},
       (SELECT p.product_id FROM products p
        WHERE p.product_id = ANY({lot_named("$3::text", "$2::text")}) AND p.owner = $2::text
        ORDER BY p.product_id = $3::text LIMIT 1) AS product_id
FROM lots l WHERE l.lot_id = ANY({lot_named("$1::text", "$2::text")})
ORDER BY l.lot_id = $1::text LIMIT 1 FOR UPDATE OF l
"""


async def lot_and_product_for_update(
    conn: Conn, lot_id: str, caller: str, product_id: str
) -> tuple[Lot | None, str | None]:
    """`lot_for_update`, and in the same statement the full id of the caller's own product it names `product_id`
    by (a bare id is its own `<prefix>:<id>`, as for lots); None when it has no such product (another's, or none:
    the same answer)."""
    r = await conn.fetchrow(LOT_AND_PRODUCT_FOR_UPDATE, lot_id, caller, product_id)
    if r is None or not r["seen"]:
        return None, None
    return lot_of_row(r), r["product_id"]


LOT_FOR_UPDATE_AND_PARTY = f"""
SELECT {LOT_COLUMNS_FOR_UPDATE}, p.kind AS party_kind, {_seen("$3::text")}
FROM lots l LEFT JOIN participants p ON p.id = $2
WHERE l.lot_id = ANY({lot_named("$1::text", "$3::text")})
ORDER BY l.lot_id = $1::text LIMIT 1 FOR UPDATE OF l
"""


LOT_AND_PARTY = LOT_FOR_UPDATE_AND_PARTY.replace("FOR UPDATE OF l", "")


async def lot_for_update_and_party(
    conn: Conn, lot_id: str, participant_id: str, *, caller: str, lock: bool = True
) -> tuple[Lot | None, str | None]:
    """The lot `caller` names `lot_id` (`lot_named`), locked (or as last committed, for `persist_unless_changed`),
    and the kind of a participant (None if unknown), in one round trip. No lot when there is none or the caller may
    not see it (never held it): the same answer, from the same statement."""
    r = await conn.fetchrow(LOT_FOR_UPDATE_AND_PARTY if lock else LOT_AND_PARTY, lot_id, participant_id, caller)
    if r is None or not r["seen"]:
        return None, None
    return lot_of_row(r), r["party_kind"]


LOTS_FOR_UPDATE = f"""
SELECT u.sent, {LOT_COLUMNS_FOR_UPDATE}, {_seen("$2::text")}
FROM unnest($1::text[]) AS u(sent)
CROSS JOIN LATERAL (
  SELECT c.lot_id FROM lots c WHERE c.lot_id = ANY({lot_named("u.sent", "$2::text")}) ORDER BY c.lot_id = u.sent LIMIT 1
) named
JOIN lots l ON l.lot_id = named.lot_id
ORDER BY l.lot_id FOR UPDATE OF l
"""


async def lots_for_update(conn: Conn, lot_ids: list[str], caller: str) -> dict[str, Lot]:
    """Several lots as `caller` names them (`lot_named`), by the id as named, locked in id order (so two
    transformations sharing inputs cannot deadlock). A lot there is none of, or that the caller may not see (never
    held it), is missing alike."""
    rows = await conn.fetch(LOTS_FOR_UPDATE, sorted(set(lot_ids)), caller)
    return {r["sent"]: lot_of_row(r) for r in rows if r["seen"]}


LOT_COLUMNS = """lot_id, created_seq, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind,
 origin_participant, origin_country, origin_region, origin_mine_name, origin_mining_type, produced_at, tag, seal,
 created_at, event_count, head_hash, produced_by, origin_source, origin_description"""


def _insert_args(lot: NewLot) -> tuple[Any, ...]:
    """A new lot's columns, in PERSIST_NEW_LOT's order ($45-$58)."""
    return (
        lot.lot_id,
        lot.mineral,
        lot.form,
        lot.mass_kg,
        lot.custodian,
        lot.origin_kind,
        lot.origin_participant,
        lot.origin_country,
        lot.origin_region,
        lot.origin_mine_name,
        lot.origin_mining_type,
        lot.produced_at,
        lot.tag,
        lot.seal,
    )


def new_lot_out(lot: NewLot, created_at: datetime, chain: Lot) -> dict[str, Any]:
    """A lot not read back from the table (written by this request): its row as `lot_out` gives it, with the head of
    its chain."""
    return lot_out(
        {
            "lot_id": lot.lot_id,
            "mineral": lot.mineral,
            "form": lot.form,
            "mass_kg": lot.mass_kg,
            "remaining_kg": lot.mass_kg,
            "status": LotStatus.active.value,
            "custodian": lot.custodian,
            "origin_kind": lot.origin_kind,
            "origin_participant": lot.origin_participant,
            "origin_country": lot.origin_country,
            "origin_region": lot.origin_region,
            "origin_mine_name": lot.origin_mine_name,
            "origin_mining_type": lot.origin_mining_type,
            "produced_by": lot.produced_by,
            "origin_source": lot.origin_source,
            "origin_description": lot.origin_description,
            "produced_at": lot.produced_at,
            "tag": lot.tag,
            "seal": lot.seal,
            "created_at": created_at,
            "event_count": chain.event_count,
            "head_hash": chain.head_hash,
        }
    )


INSERT_LOTS = """
INSERT INTO lots (lot_id, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind, origin_participant,
                  origin_country, origin_region, origin_mine_name, origin_mining_type, produced_at, tag, seal,
                  head_hash, event_count, created_at, updated_at, produced_by, origin_source, origin_description)
SELECT u.lot_id, u.mineral, u.form, u.mass_kg, u.mass_kg, 'active', u.custodian, u.origin_kind, u.origin_participant,
       u.origin_country, u.origin_region, u.origin_mine_name, u.origin_mining_type, u.produced_at, u.tag, u.seal,
       u.head_hash, u.event_count, $17, $17, u.produced_by, u.origin_source, u.origin_description
FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[], $14::text[], $15::bytea[],
            $16::int[], $18::text[], $19::text[], $20::text[])
     WITH ORDINALITY AS u(lot_id, mineral, form, mass_kg, custodian, origin_kind, origin_participant, origin_country,
                          origin_region, origin_mine_name, origin_mining_type, produced_at, tag, seal, head_hash,
                          event_count, produced_by, origin_source, origin_description, n)
ORDER BY u.n
ON CONFLICT (lot_id) DO NOTHING
RETURNING lot_id
"""


async def insert_lots(conn: Conn, lots: list[tuple[NewLot, Lot]], created_at: datetime) -> set[str]:
    """New lots with the heads of their chains; returns the ids it inserted (a taken id is left as it is)."""
    cols = [list(c) for c in zip(*(_insert_args(new) for new, _ in lots), strict=True)]
    heads = [[chain.head_hash for _, chain in lots], [chain.event_count for _, chain in lots]]
    produced_by = [new.produced_by for new, _ in lots]
    sources = [[new.origin_source for new, _ in lots], [new.origin_description for new, _ in lots]]
    return {r["lot_id"] for r in await conn.fetch(INSERT_LOTS, *cols, *heads, created_at, produced_by, *sources)}


# --- shipments ---------------------------------------------------------------------------------------------

SHIPMENT_AND_LOT_FOR_UPDATE = """
SELECT s.shipment_id, s.lot_id, s.from_participant, s.to_participant, s.mass_kg, s.shipped_at, s.seal,
       s.transit_countries, s.max_transit_days, s.status AS shipment_status, s.received_at, s.received_mass_kg,
       s.received_seal, s.tag AS shipment_tag, s.transit_regions, s.received_tag,
       l.mineral, l.form, l.custodian, l.status, l.remaining_kg, l.head_hash, l.event_count
FROM shipments s JOIN lots l ON l.lot_id = s.lot_id
WHERE s.shipment_id = $1 FOR UPDATE
"""


SHIPMENT_AND_LOT = SHIPMENT_AND_LOT_FOR_UPDATE.replace("FOR UPDATE", "")


async def shipment_and_lot_for_update(
    conn: Conn, shipment_id: str, *, lock: bool = True
) -> tuple[ShipmentState, dict[str, Any], Lot] | None:
    """The shipment and its lot, both locked (or as last committed, for `persist_unless_changed`), in one round
    trip."""
    r = await conn.fetchrow(SHIPMENT_AND_LOT_FOR_UPDATE if lock else SHIPMENT_AND_LOT, shipment_id)
    if r is None:
        return None
    row = dict(r)
    row["status"] = row.pop("shipment_status")
    row["tag"] = row.pop("shipment_tag")
    state = ShipmentState(r["shipment_id"], r["lot_id"], r["to_participant"], row["status"] == "received")
    return state, row, lot_of_row(r)


def shipment_out(r: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "shipment_id": r["shipment_id"],
        "lot_id": r["lot_id"],
        "from_participant": r["from_participant"],
        "to": r["to_participant"],
        "mass_kg": r["mass_kg"],
        "shipped_at": r["shipped_at"],
        "seal": r["seal"],
        "transit_countries": list(r["transit_countries"]),
        "max_transit_days": r["max_transit_days"],
        "status": r["status"],
        "received_at": r["received_at"],
        "received_mass_kg": r["received_mass_kg"],
        "received_seal": r["received_seal"],
        "tag": r["tag"],
        "transit_regions": list(r["transit_regions"]),
        "received_tag": r["received_tag"],
    }


# --- what a write changed, written at its end -----------------------------------------------------------------


@dataclass(slots=True)
class Changes:
    """Everything one write changes, collected by its unit of work (`custody/unit_of_work.py`) and written at the
    end with the answer kept for its Idempotency-Key (`persist`, or `persist_unless_changed` without locks).

    On our machines a database round trip costs about 0.15 ms of the service's CPU (a loopback send() alone
    ~0.1 ms), as much as the rest of a small write: a ship, a receipt or a registration is one statement."""

    lots: list[Lot] = field(default_factory=list)  # existing lots whose chain grew: their events and new heads
    new_lots: list[tuple[NewLot, Lot]] = field(default_factory=list)  # new lots, with their chains
    created_at: datetime | None = None  # of the new lots
    events: list[CloudEvent] = field(default_factory=list)  # the outbox rows, in order
    holders: list[tuple[str, str]] = field(default_factory=list)  # (lot, participant) that hold or held it
    shipment: tuple[Any, ...] | None = None  # a new shipment: PERSIST's $27-$35
    receipt: tuple[Any, ...] | None = None  # a receipt: PERSIST's $36-$39
    # the bag's tag as shipped, the shipment's transit regions, the tag found on arrival (`_bag_args`)
    shipment_tag: str | None = None
    transit_regions: list[str] = field(default_factory=list)
    received_tag: str | None = None
    transformation: tuple[Any, ...] | None = None  # INSERT_TRANSFORMATION's arguments (`transformation_rows`)
    consumption: tuple[Any, ...] | None = None  # (id, lot, actor, product, kg, consumed_at, product_id)
    product: tuple[Any, ...] | None = None  # a product written: (INSERT_PRODUCT or UPDATE_PRODUCT, its arguments)
    rejection: tuple[Any, ...] | None = None  # (event id, actor, action, subject, reason, detail, request)
    # The named mine's answer to a declaration (`UPSERT_ORIGIN_CONFIRMATION`'s arguments).
    origin_confirmation: tuple[Any, ...] | None = None
    # A registration without locks: the (participant, version) its origin was read from (PERSIST_NEW_LOT's gate).
    registered_from: tuple[str, int] | None = None


def _persist_writes(gate: str, bag: int | None = None, *, chain: int) -> str:
    """The CTEs that write a ship or a receipt, each only where `gate` (an SQL condition) holds. `bag`: the number
    of the first of the three parameters `_bag_args` gives (a shipment's tag and transit regions, a receipt's tag),
    after the statement's own; None for a statement that writes neither (a registration). `chain`: the number of the
    first of the three parameters `_chain_args` gives (the events' recipes and salts, the request's traceparent), the
    statement's last."""
    if bag is None:
        tag, regions, received_tag = "NULL::text", "'{}'::text[]", "NULL::text"
    else:
        tag, regions, received_tag = f"${bag}::text", f"${bag + 1}::text[]", f"${bag + 2}::text"
    return f"""ev AS (
  INSERT INTO lot_events (event_id, lot_id, seq, type, occurred_at, actor, data, prev_hash, hash, recipe, salts)
  SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::text[], $7::jsonb[],
                       $8::bytea[], $9::bytea[], ${chain}::smallint[], ${chain + 1}::jsonb[]) WHERE {gate}
), lt AS (
  UPDATE lots SET custodian = u.custodian, status = u.status, remaining_kg = u.remaining_kg,
                  head_hash = u.head_hash, event_count = u.event_count, updated_at = now()
  FROM unnest($10::text[], $11::text[], $12::text[], $13::numeric[], $14::bytea[], $15::int[])
       AS u(lot_id, custodian, status, remaining_kg, head_hash, event_count)
  WHERE lots.lot_id = u.lot_id AND {gate}
), ho AS (
  INSERT INTO lot_holders (lot_id, participant_id) SELECT * FROM unnest($16::text[], $17::text[]) WHERE {gate}
  ON CONFLICT DO NOTHING
), ob AS (
  INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data, traceparent)
  SELECT *, ${chain + 2}::text FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::text[],
                       $23::text[], $24::timestamptz[], $25::text[], $26::jsonb[]) WHERE {gate}
), sh AS (
  INSERT INTO shipments (shipment_id, lot_id, from_participant, to_participant, mass_kg, shipped_at, seal,
                         transit_countries, max_transit_days, status, tag, transit_regions)
  SELECT $27::text, $28::text, $29::text, $30::text, $31::numeric, $32::timestamptz, $33::text, $34::text[],
         $35::int, 'in_transit', {tag}, {regions}
  WHERE $27::text IS NOT NULL AND {gate}
), rc AS (
  UPDATE shipments SET status = 'received', received_at = $37, received_mass_kg = $38, received_seal = $39,
                       received_tag = {received_tag}
  WHERE shipment_id = $36::text AND {gate}
)"""


PERSIST = (
    "WITH "
    + _persist_writes("TRUE", bag=44, chain=47)
    + """
UPDATE idempotency_keys SET status = $42, response = $43 WHERE actor = $40::text AND key = $41::text
"""
)


def _persist_args(topic: str, c: Changes, *, actor: str, key: str | None, status: int, body: Any) -> list[Any]:
    """$1-$43 of PERSIST and PERSIST_UNLESS_CHANGED: the events, lot heads, holders, outbox rows, shipment or
    receipt, and the answer kept for (actor, key). New lots are inserted with their heads, not updated here."""
    events = _new_events(c)
    event_cols: list[list[Any]] = [list(col) for col in zip(*events, strict=True)] or [[] for _ in range(11)]
    lots = c.lots
    return [
        *event_cols[:9],
        [lot.lot_id for lot in lots],
        [lot.custodian for lot in lots],
        [lot.status.value for lot in lots],
        [lot.remaining_kg for lot in lots],
        [lot.head_hash for lot in lots],
        [lot.event_count for lot in lots],
        [h[0] for h in c.holders],
        [h[1] for h in c.holders],
        *outbox_columns(topic, c.events)[:9],  # their traceparent: the request's (`_chain_args`)
        *(c.shipment or (None,) * 9),
        *(c.receipt or (None,) * 4),
        actor,
        key,
        status,
        _json(body),
    ]


def _new_events(c: Changes) -> list[tuple[Any, ...]]:
    """The `lot_events` rows of the write (`domain.Lot.append`), new lots' first."""
    return [e for _, lot in c.new_lots for e in lot.new_events] + [e for lot in c.lots for e in lot.new_events]


def _chain_args(c: Changes) -> list[Any]:
    """The parameters `_persist_writes(..., chain=n)` takes from $n: each event's hash recipe and salts (JSON), and
    the trace context of the request (`shared.tracing`) its outbox rows keep."""
    events = _new_events(c)
    return [[e[9] for e in events], [e[10] for e in events], current_traceparent.get()]


def _bag_args(c: Changes) -> list[Any]:
    """The parameters `_persist_writes(..., bag=n)` takes from $n: the shipment's tag and transit regions, the
    receipt's tag (after the statement's own, so that PERSIST_NEW_LOT, which writes neither, keeps its numbers)."""
    return [c.shipment_tag, c.transit_regions, c.received_tag]


def _written(c: Changes) -> None:
    for _, lot in c.new_lots:
        lot.new_events.clear()
    for lot in c.lots:
        lot.new_events.clear()


async def persist(
    conn: Conn, topic: str, c: Changes, *, actor: str, key: str | None, status: int, body: Any
) -> list[str]:
    """Write `c` (events on `topic`) under the locks the write took, and keep the answer for (actor, key) if there is
    a key. Returns the ids of new lots that were taken already, in which case nothing was written (the caller
    refuses the write: `lot_exists`). A ship, a receipt or a registration is one round trip; a transformation, a
    consumption, a declaration or a refusal writes its own rows first."""
    if c.new_lots:
        assert c.created_at is not None, "new lots are created at a time"
        wanted = [new.lot_id for new, _ in c.new_lots]
        if len(c.new_lots) == 1:
            inserted = await insert_lots(conn, c.new_lots, c.created_at)
        else:  # several: all or none, so in a savepoint
            try:
                async with conn.transaction():
                    inserted = await insert_lots(conn, c.new_lots, c.created_at)
                    if len(inserted) < len(wanted):
                        raise _Taken
            except _Taken:
                pass
        if len(inserted) < len(wanted):
            return [lot_id for lot_id in wanted if lot_id not in inserted]
    if c.transformation is not None:
        await conn.execute(INSERT_TRANSFORMATION, *c.transformation)
    if c.consumption is not None:
        await conn.execute(INSERT_CONSUMPTION, *c.consumption)
    if c.product is not None:
        await conn.execute(*c.product)
    if c.rejection is not None:
        await conn.execute(INSERT_REJECTION, *c.rejection)
    if c.origin_confirmation is not None:
        await conn.execute(UPSERT_ORIGIN_CONFIRMATION, *c.origin_confirmation)
    args = _persist_args(topic, c, actor=actor, key=key, status=status, body=body)
    await conn.execute(PERSIST, *args, *_bag_args(c), *_chain_args(c))
    _written(c)
    return []


class _Taken(Exception):
    """A new lot's id is taken: the savepoint rolls back the lots inserted with it."""


PERSIST_UNLESS_CHANGED = (
    """
WITH cas AS (
  SELECT l.lot_id FROM lots l JOIN unnest($10::text[], $44::bytea[]) AS u(lot_id, read_head) USING (lot_id)
  WHERE l.head_hash = u.read_head FOR UPDATE OF l
), k AS (
  INSERT INTO idempotency_keys (actor, key, request_hash, status, response)
  SELECT $40::text, $41::text, $45::bytea, $42::int, $43::jsonb
  WHERE $41::text IS NOT NULL AND (SELECT count(*) FROM cas) = cardinality($10::text[])
  ON CONFLICT DO NOTHING RETURNING 1
), go AS (
  SELECT (SELECT count(*) FROM cas) = cardinality($10::text[]) AND ($41::text IS NULL OR EXISTS (SELECT 1 FROM k))
         AS ok
), """
    + _persist_writes("(SELECT ok FROM go)", bag=46, chain=49)
    + """
SELECT ok FROM go
"""
)
"""PERSIST without the lots' locks: each lot's head must still be the one read (`cas`, locked in the same statement;
a concurrent writer's change is seen and waited for), and the Idempotency-Key must be new (`k`, inserted with the
answer); else nothing at all is written and the statement answers false. Two round trips for a ship or a receipt
instead of five (BEGIN, key, locks, PERSIST, COMMIT): on our machines each costs ~0.2 ms of the service's CPU."""

PERSIST_NEW_LOT = (
    """
WITH g AS (
  SELECT EXISTS (SELECT 1 FROM participants WHERE id = $62::text AND version = $63::bigint) AS ok
), nl AS (
  INSERT INTO lots (lot_id, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind, origin_participant,
                    origin_country, origin_region, origin_mine_name, origin_mining_type, produced_at, tag, seal,
                    head_hash, event_count, created_at, updated_at, produced_by)
  SELECT $45::text, $46::text, $47::text, $48::numeric, $48::numeric, 'active', $49::text, $50::text, $51::text,
         $52::text, $53::text, $54::text, $55::text, $56::timestamptz, $57::text, $58::text, $59::bytea, $60::int,
         $61::timestamptz, $61::timestamptz, $64::text
  WHERE (SELECT ok FROM g)
), k AS (
  INSERT INTO idempotency_keys (actor, key, request_hash, status, response)
  SELECT $40::text, $41::text, $44::bytea, $42::int, $43::jsonb WHERE $41::text IS NOT NULL AND (SELECT ok FROM g)
), """
    + _persist_writes("(SELECT ok FROM g)", chain=65)
    + """
SELECT ok FROM g
"""
)
"""A registration in one statement, its own transaction: the lot with its first event as head, the event, holder,
outbox row and the answer for the Idempotency-Key, all only if the registering participant's version ($62, $63) is
still the one its origin was taken from (`g`). Neither the lot nor the key is inserted with ON CONFLICT: if the lot
id or the key is taken, the statement fails whole and nothing is written. Either way the caller does it again under
the locks, where a refusal is recorded or the key's answer replayed. Two round trips instead of six, one when the
participant was cached (`ParticipantCache`)."""


async def persist_unless_changed(
    conn: Conn,
    topic: str,
    c: Changes,
    *,
    actor: str,
    key: str | None,
    request_hash: bytes,
    status: int,
    body: Any,
) -> bool:
    """Write `c` and the answer if no lot changed since it was read and the key is new; one statement, its own
    transaction. False: nothing written (the caller does it again under the locks, which also replays a key's
    answer). Takes a ship or a receipt (lots read, `c.lots`), or a registration (one new lot, `c.new_lots`, read
    from the participant `c.registered_from`)."""
    args = _persist_args(topic, c, actor=actor, key=key, status=status, body=body)
    if c.new_lots:
        assert c.registered_from is not None and c.created_at is not None and not c.lots
        ((new, lot),) = c.new_lots
        participant_id, version = c.registered_from
        try:
            head = (lot.head_hash, lot.event_count, c.created_at, participant_id, version)
            written = await conn.fetchval(
                PERSIST_NEW_LOT, *args, request_hash, *_insert_args(new), *head, new.produced_by, *_chain_args(c)
            )
        except asyncpg.UniqueViolationError:
            return False  # the lot id or the key is taken: nothing was written
        if written:
            _written(c)
        return bool(written)  # false: the participant changed since it was read (nothing was written)
    read_heads = [lot.new_events[0][7] if lot.new_events else lot.head_hash for lot in c.lots]
    ok = await conn.fetchval(PERSIST_UNLESS_CHANGED, *args, read_heads, request_hash, *_bag_args(c), *_chain_args(c))
    if ok:
        _written(c)
    return bool(ok)


# --- idempotency keys ------------------------------------------------------------------------------------------

CLAIM_KEY = """
INSERT INTO idempotency_keys (actor, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING 1
"""


async def claim_idempotency_key(conn: Conn, actor: str, key: str, request_hash: bytes) -> asyncpg.Record | None:
    """None when the key is new (now ours); else the stored row (a concurrent holder is waited for)."""
    if await conn.fetchval(CLAIM_KEY, actor, key, request_hash):
        return None
    return await conn.fetchrow(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE actor = $1 AND key = $2", actor, key
    )


# --- the rows of transformations, consumptions and refusals ------------------------------------------------------

INSERT_TRANSFORMATION = """
WITH t AS (
  INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, custody_model)
  VALUES ($1, $2, $3, $4, $5, $9)
), i AS (
  INSERT INTO transformation_inputs (transformation_id, lot_id, position, mass_kg)
  SELECT $1, u.lot_id, (u.n - 1)::int, u.mass_kg
  FROM unnest($6::text[], $7::numeric[]) WITH ORDINALITY AS u(lot_id, mass_kg, n)
)
INSERT INTO transformation_outputs (transformation_id, lot_id, position)
SELECT $1, u.lot_id, (u.n - 1)::int FROM unnest($8::text[]) WITH ORDINALITY AS u(lot_id, n)
"""
"""A transformation and its lots, stored once: one row, one per input (with the mass drawn), one per output (n + m
rows, never n x m edges; `shared.genealogy` walks through them). One round trip."""
INSERT_CONSUMPTION = """
INSERT INTO consumptions (consumption_id, lot_id, actor, product, mass_kg, consumed_at, product_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
UPSERT_ORIGIN_CONFIRMATION = """
INSERT INTO origin_confirmations (lot_id, mine, confirmed, note, answered_at, event_id) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (lot_id) DO UPDATE SET mine = EXCLUDED.mine, confirmed = EXCLUDED.confirmed, note = EXCLUDED.note,
    answered_at = EXCLUDED.answered_at, event_id = EXCLUDED.event_id
"""
"""The latest answer of the mine a declaration named (each answer is also an event on the lot's chain)."""
DECLARED_LOT_FOR_UPDATE = f"""
SELECT {LOT_COLUMNS_FOR_UPDATE}, l.origin_kind, l.origin_participant,
       EXISTS (SELECT 1 FROM lot_holders h WHERE h.lot_id = l.lot_id AND h.participant_id = $2) AS holder
FROM lots l WHERE l.lot_id = ANY({lot_named("$1::text", "$2::text")})
ORDER BY l.lot_id = $1::text LIMIT 1 FOR UPDATE OF l
"""


@dataclass(frozen=True, slots=True)
class DeclaredLot:
    """A lot as a confirmation of its declared origin sees it: the lot, how it came to be, the mine its declaration
    named, and whether the caller holds or held it."""

    lot: Lot
    origin_kind: str
    named_mine: str | None
    caller_holds: bool


async def declared_lot_for_update(conn: Conn, lot_id: str, caller: str) -> DeclaredLot | None:
    r = await conn.fetchrow(DECLARED_LOT_FOR_UPDATE, lot_id, caller)
    if r is None:
        return None
    return DeclaredLot(lot_of_row(r), r["origin_kind"], r["origin_participant"], r["holder"])


INSERT_REJECTION = """
INSERT INTO rejected_attempts (event_id, actor, action, subject, reason, detail, request)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


def transformation_rows(
    transformation_id: str,
    kind: str,
    actor: str,
    actor_kind: str,
    occurred_at: datetime,
    inputs: list[tuple[str, Decimal]],
    outputs: list[str],
    custody_model: str | None = None,
) -> tuple[Any, ...]:
    """INSERT_TRANSFORMATION's arguments: the inputs as (lot, mass drawn), the outputs' lot ids, in the order given,
    and the chain-of-custody model recorded (if any)."""
    return (
        transformation_id,
        kind,
        actor,
        actor_kind,
        occurred_at,
        [lot_id for lot_id, _ in inputs],
        [kg for _, kg in inputs],
        outputs,
        custody_model,
    )


def rejection_row(
    event_id: str, actor: str, action: str, subject: str | None, reason: str, detail: str, request: Any
) -> tuple[Any, ...]:
    return (event_id, actor, action, subject, reason, detail, _json(request))


# --- reads ---------------------------------------------------------------------------------------------------


def lot_out(r: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "lot_id": r["lot_id"],
        "mineral": r["mineral"],
        "form": r["form"],
        "mass_kg": r["mass_kg"],
        "remaining_kg": r["remaining_kg"],
        "status": r["status"],
        "custodian": r["custodian"],
        "origin": {
            "kind": r["origin_kind"],
            "participant_id": r["origin_participant"],
            "country": r["origin_country"],
            "region": r["origin_region"],
            "mine_name": r["origin_mine_name"],
            "mining_type": r["origin_mining_type"],
            "source": r.get("origin_source"),
            "description": r.get("origin_description"),
        },
        "produced_by": r.get("produced_by"),
        "produced_at": r["produced_at"],
        "tag": r["tag"],
        "seal": r["seal"],
        "created_at": r["created_at"],
        "events": r["event_count"],
        "head_hash": h if isinstance(h := r["head_hash"], str) else h.hex(),  # the trace reads it as hex already
    }


async def get_lot(conn: Conn, lot_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {LOT_COLUMNS} FROM lots WHERE lot_id = $1", lot_id)


async def list_lots(
    conn: Conn,
    *,
    holder: str | None,
    custodian: str | None,
    mineral: str | None,
    status: str | None,
    after: int,
    limit: int,
    opened: tuple[list[str], list[str], int] | None = None,
) -> list[asyncpg.Record]:
    """`holder`: only the lots it holds or held; `opened`: only the lots a regulator's grant (lots, participants,
    depth) opens (`shared.visibility.grant_lots_sql`)."""
    where: list[str] = ["created_seq > $1"]
    args: list[Any] = [after]
    if holder is not None:
        args.append(holder)
        where.append(f"lot_id IN (SELECT lot_id FROM lot_holders WHERE participant_id = ${len(args)})")
    if opened is not None:
        args.extend(opened)
        n = len(args)
        where.append(f"lot_id IN ({grant_lots_sql(f'${n - 2}', f'${n - 1}', f'${n}')})")
    for col, val in (("custodian", custodian), ("mineral", mineral), ("status", status)):
        if val is not None:
            args.append(val)
            where.append(f"{col} = ${len(args)}")
    args.append(limit)
    sql = f"SELECT {LOT_COLUMNS} FROM lots WHERE {' AND '.join(where)} ORDER BY created_seq LIMIT ${len(args)}"
    return list(await conn.fetch(sql, *args))


async def history(conn: Conn, lot_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT event_id, lot_id, seq, type, occurred_at, recorded_at, actor, data::text AS data, prev_hash, hash, "
            "recipe, salts::text AS salts FROM lot_events WHERE lot_id = $1 ORDER BY seq",
            lot_id,
        )
    )


UPSTREAM = walk_sql(upstream=True) + "SELECT lot_id, depth FROM reached"
DOWNSTREAM = walk_sql(upstream=False) + "SELECT lot_id, depth FROM reached"
"""The bare recursions (the trace benchmark's baseline)."""


def counterparties_sql(viewer: str, other: str) -> str:
    """SQL: did `viewer` and `other` (SQL text expressions) trade directly, a shipment either way? At most two
    probes of `ix_shipments_parties` (`OFFSET 0`: index probes under the service's generic plans)."""
    return (
        f"(EXISTS (SELECT 1 FROM shipments s WHERE s.from_participant = {viewer} AND s.to_participant = {other} "
        f"OFFSET 0) OR EXISTS (SELECT 1 FROM shipments s WHERE s.from_participant = {other} "
        f"AND s.to_participant = {viewer} OFFSET 0))"
    )


PARTY = "~party"
"""A trace row's `parent` when the row is a participant its lots and edges name, as `party_views` tells it: `lot_id`
the participant, `kind` and `actor` its kind and policy, `cut` whether it and the reader are direct counterparties
(for a participant reader only: the look-up costs no round trip of its own)."""


def party_rows(rows: list[asyncpg.Record]) -> tuple[list[asyncpg.Record], dict[str, PartyView]]:
    """A trace's rows without its participant rows, and those as `party_views` gives them."""
    parties = {r["lot_id"]: PartyView(r["kind"], r["actor"], r["cut"]) for r in rows if r["parent"] == PARTY}
    return ([r for r in rows if r["parent"] != PARTY] if parties else rows), parties


def _trace_sql(*, upstream: bool) -> str:
    """Every lot of a trace, then every edge between two of its lots, in one statement.

    $1 lot, $2 depth limit, $3 the participant asking (NULL: the operator; downstream, a participant sees the lot
    asked about and the lots it held itself, not other companies' products), $4 the most lots (`walk_sql`'s
    `max_lots`: the walk stops there, before the step that would pass it), $5 the most edges, $6 how far down a
    participant's lots may be from $1 for it to read the trace at all (`shared.visibility.lot_visible_sql`, checked
    first: no rows when it may not, as for a lot that does not exist; one round trip less). Rows come in runs told
    apart by `edge`: first one row per lot in (depth, lot id) order, then one row per edge (`lot_id` is the child,
    `depth` the child's) in (depth, child, parent) order, the other run's columns NULL. Masses are float8 and the hash
    hex, so no Decimal or bytes object is built per value. A lot row's `cut` says the walk stopped there
    (`shared.genealogy`: reached at the depth the walk stopped at, and the genealogy goes on from it), its `lots_cut_at`
    the depth the walk stopped at when `$4` stopped it.

    An edge is an input and an output of one transformation (`transformation_inputs`, `transformation_outputs`: n + m
    rows a transformation, `shared.genealogy`), both in the trace. Upstream each lot of the trace looks for the
    transformation that made it (`outs`) and that transformation's inputs in the trace (`ins`); downstream each lot
    looks for the transformations it was drawn into (`ins`) and their outputs in the trace (`outs`): either way one
    index probe per lot, then only the rows of the transformations on the path, n + m rows a transformation.
    The edges are first counted from those (sum of inputs x outputs a transformation): when they would be more than
    $5, neither lots nor edges are built and the statement answers instead, as rows with `edge` NULL, how many of
    the trace's lots each transformation has on each side at each depth (`parent` 'in' or 'out', the count in
    `mass_kg`): `shared.genealogy.edge_depth` finds the depth to trace to from them. So the database never builds
    more than $5 edges, however wide the transformations. `ends` holds each transformation's parents and children
    as arrays (one grouping, then the edges unnested from it): a join of `ins` and `outs` became, under the
    service's generic plans (their estimate of a CTE is a few rows), a nested loop of 280,000 comparisons for 744
    edges. Against the statement before the limits (lot-to-lot walk, edges joined per lot), on the 380-lot trace
    below, generic plans, a busy 2-core machine: upstream p50 9.7 ms (was 7.8), downstream 9.1 ms (was 6.9): the
    hub walk's extra steps and the count.

    Measured on a 10,000-lot genealogy, 380 lots and 744 edges returned (bench/trace_bench.py): the lots and the
    edges are index probes per reached lot (`OFFSET 0` keeps the planner from a sequential scan of every lot, which
    its estimate of the walk's size otherwise prefers and which grows with the table); ids sort with the "C"
    collation (the same order for our ASCII ids, without the locale's comparison). Per-lot arrays of incoming edges
    cost a semi-join over the walk for each lot and 6 sorts, ~25% slower; the whole document as JSON in PostgreSQL
    (json_build_object) ~50 us a lot, slower than decoding rows."""
    visible = (
        "TRUE OR $3::text IS NULL"  # upstream: everything ($3 is named so that its type is known)
        if upstream
        else "$3::text IS NULL OR v.lot_id = $1 OR EXISTS "
        "(SELECT 1 FROM lot_holders h WHERE h.lot_id = v.lot_id AND h.participant_id = $3::text)"
    )
    # May participant $3 read lot $1 at all (`lot_visible_sql`'s walk, at most $6 steps down)? When not, `vis` is
    # empty without walking (a one-time filter), and so is the answer: as for a lot that does not exist.
    # The common case first, one probe: it holds or held the lot itself (OR stops there, no walk).
    allowed = (
        "$3::text IS NULL OR EXISTS (SELECT 1 FROM lot_holders h WHERE h.lot_id = $1 AND h.participant_id = $3::text)"
        " OR EXISTS ("
        + walk_sql(upstream=False, depth_limit="$6::int")
        + "SELECT 1 FROM lot_holders h JOIN reached USING (lot_id) WHERE h.participant_id = $3::text)"
    )
    nulls = ", ".join(["NULL"] * 18)  # remaining_kg ... head_hash, produced_by, origin_source, origin_description
    cut = goes_on_sql(upstream=upstream, lot="v.lot_id")
    if upstream:  # from each lot (a child) to the transformation that made it, to its inputs in the trace
        sides = """, outs AS MATERIALIZED (
  SELECT o.transformation_id, c.lot_id AS child, c.depth
  FROM vis c CROSS JOIN LATERAL (
    SELECT o.transformation_id FROM transformation_outputs o WHERE o.lot_id = c.lot_id OFFSET 0
  ) o
), ins AS MATERIALIZED (
  SELECT i.transformation_id, i.lot_id AS parent, p.depth, i.mass_kg
  FROM (SELECT DISTINCT transformation_id FROM outs) t
  JOIN transformation_inputs i USING (transformation_id) JOIN vis p ON p.lot_id = i.lot_id
)"""
    else:  # from each lot (a parent) to the transformations it was drawn into, to their outputs in the trace
        sides = """, ins AS MATERIALIZED (
  SELECT i.transformation_id, p.lot_id AS parent, p.depth, i.mass_kg
  FROM vis p CROSS JOIN LATERAL (
    SELECT i.transformation_id, i.mass_kg FROM transformation_inputs i WHERE i.lot_id = p.lot_id OFFSET 0
  ) i
), outs AS MATERIALIZED (
  SELECT o.transformation_id, o.lot_id AS child, c.depth
  FROM (SELECT DISTINCT transformation_id FROM ins) t
  JOIN transformation_outputs o USING (transformation_id) JOIN vis c ON c.lot_id = o.lot_id
)"""
    return (
        walk_sql(upstream=upstream, max_lots="$4")
        + f""", allowed AS MATERIALIZED (SELECT {allowed} AS yes),
vis AS MATERIALIZED (SELECT v.lot_id, v.depth FROM reached v WHERE (SELECT yes FROM allowed) AND ({visible})){sides},
ends AS MATERIALIZED (
  SELECT x.transformation_id,
         array_agg(x.lot_id) FILTER (WHERE x.is_in) AS parents, array_agg(x.mass_kg) FILTER (WHERE x.is_in) AS masses,
         array_agg(x.lot_id) FILTER (WHERE NOT x.is_in) AS children,
         array_agg(x.depth) FILTER (WHERE NOT x.is_in) AS depths
  FROM (
    SELECT transformation_id, true AS is_in, parent AS lot_id, mass_kg, depth FROM ins
    UNION ALL
    SELECT transformation_id, false, child, NULL, depth FROM outs
  ) x
  GROUP BY x.transformation_id
), too_many AS MATERIALIZED (
  SELECT coalesce(sum(cardinality(parents)::bigint * cardinality(children)), 0) > $5::int AS yes FROM ends
)
SELECT false AS edge, v.depth, l.lot_id COLLATE "C" AS lot_id, l.mineral, l.form, l.mass_kg::float8 AS mass_kg,
       l.remaining_kg::float8 AS remaining_kg, l.status, l.custodian, l.origin_kind, l.origin_participant,
       l.origin_country, l.origin_region, l.origin_mine_name, l.origin_mining_type, l.produced_at, l.tag, l.seal,
       l.created_at, l.event_count, encode(l.head_hash, 'hex') AS head_hash, l.produced_by, l.origin_source,
       l.origin_description,
       NULL COLLATE "C" AS parent, NULL AS transformation_id, NULL AS kind, NULL AS actor, NULL AS actor_kind,
       NULL AS actor_rmi,
       CASE WHEN v.depth = (SELECT depth FROM walk_end) THEN {cut} ELSE false END AS cut,
       (SELECT CASE WHEN lots_cut THEN depth END FROM walk_end) AS lots_cut_at, NULL::text AS custody_model
FROM vis v CROSS JOIN LATERAL (SELECT * FROM lots l WHERE l.lot_id = v.lot_id OFFSET 0) l
WHERE NOT (SELECT yes FROM too_many)
UNION ALL
SELECT true, c.depth, c.child COLLATE "C", NULL, NULL, p.mass_kg::float8, {nulls},
       p.parent COLLATE "C", e.transformation_id, t.kind, t.actor, t.actor_kind, t.actor_rmi, false, NULL,
       t.custody_model
FROM ends e
CROSS JOIN LATERAL (
  SELECT t.kind, t.actor, t.actor_kind, t.custody_model,
         (SELECT a.rmi_smelter_id FROM participants a WHERE a.id = t.actor) AS actor_rmi
  FROM transformations t WHERE t.transformation_id = e.transformation_id OFFSET 0
) t
CROSS JOIN LATERAL unnest(e.children, e.depths) c(child, depth)
CROSS JOIN LATERAL unnest(e.parents, e.masses) p(parent, mass_kg)
WHERE NOT (SELECT yes FROM too_many)
UNION ALL
SELECT NULL, s.depth, NULL, NULL, NULL, s.n::float8, {nulls}, s.side, s.transformation_id, NULL, NULL, NULL, NULL,
       false, NULL, NULL
FROM (
  SELECT transformation_id, 'in' AS side, depth, count(*) AS n FROM ins GROUP BY transformation_id, depth
  UNION ALL
  SELECT transformation_id, 'out', depth, count(*) FROM outs GROUP BY transformation_id, depth
) s
WHERE (SELECT yes FROM too_many)
UNION ALL
SELECT NULL, NULL, q.id COLLATE "C", NULL, NULL, NULL, {nulls}, '{PARTY}', NULL, a.kind, a.disclosure, NULL, NULL,
       {counterparties_sql("$3::text", "q.id")}, NULL, NULL
FROM (
  SELECT DISTINCT n.id FROM (
    SELECT unnest(ARRAY[l.custodian, l.origin_participant, l.produced_by]) AS id
    FROM vis v CROSS JOIN LATERAL (
      SELECT l.custodian, l.origin_participant, l.produced_by FROM lots l WHERE l.lot_id = v.lot_id OFFSET 0
    ) l
    UNION ALL
    SELECT t.actor FROM ends e JOIN transformations t USING (transformation_id)
  ) n
  WHERE n.id IS NOT NULL AND n.id <> $3::text
) q
LEFT JOIN LATERAL (SELECT a.kind, a.disclosure FROM participants a WHERE a.id = q.id OFFSET 0) a ON true
WHERE $3::text IS NOT NULL AND NOT (SELECT yes FROM too_many)
ORDER BY edge, depth, lot_id, parent
"""
    )


TRACE_UP_ROWS = _trace_sql(upstream=True)
TRACE_DOWN_ROWS = _trace_sql(upstream=False)


async def trace_rows(
    conn: Conn,
    lot_id: str,
    *,
    upstream: bool,
    max_depth: int,
    max_lots: int,
    max_edges: int,
    participant: str | None,
    read_depth: int | None = None,
) -> list[asyncpg.Record]:
    """See `_trace_sql`; empty when there is no such lot, or `participant` may not read it (`read_depth`: how far
    down its lots may be, `max_depth` when not given)."""
    sql = TRACE_UP_ROWS if upstream else TRACE_DOWN_ROWS
    depth = max_depth if read_depth is None else read_depth
    return list(await conn.fetch(sql, lot_id, max_depth, participant, max_lots, max_edges, depth))


async def consumptions_of(conn: Conn, lot_ids: list[str]) -> list[asyncpg.Record]:
    """The consumptions of these lots, each with its registered product's current name (null: free text only)."""
    return list(
        await conn.fetch(
            "SELECT c.consumption_id, c.lot_id, c.actor, c.product, c.product_id, p.name AS product_name, c.mass_kg, "
            "c.consumed_at FROM consumptions c LEFT JOIN products p ON p.product_id = c.product_id "
            "WHERE c.lot_id = ANY($1::text[]) ORDER BY c.consumed_at",
            lot_ids,
        )
    )


MAY_READ = lot_visible_sql("$3")


async def may_read(conn: Conn, lot_id: str, participant_id: str, max_depth: int) -> bool:
    """A participant reads the lots it holds or held, and everything upstream of them."""
    return bool(await conn.fetchval(MAY_READ, lot_id, participant_id, max_depth))


# --- what a reader may see of what it reads (issue 24: disclosure) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartyView:
    """A participant named in what a participant viewer reads, as the viewer's disclosure needs it: its kind and
    policy (None when custody does not know it: the default applies) and whether the viewer and it are direct
    counterparties (a shipment between them, either way)."""

    kind: str | None
    disclosure: str | None
    counterparty: bool


PARTY_VIEWS = f"""
SELECT u.id, p.kind, p.disclosure, {counterparties_sql("$1", "u.id")} AS counterparty
FROM unnest($2::text[]) AS u(id)
LEFT JOIN LATERAL (SELECT q.kind, q.disclosure FROM participants q WHERE q.id = u.id OFFSET 0) p ON true
"""
"""Per participant named, one probe of the participants' key and at most two of `ix_shipments_parties` (`OFFSET 0`:
index probes under the service's generic plans, never a scan of every participant or a hash of the viewer's
shipments; 0.09 ms for 5 participants among 2,000 with 20,000 shipments)."""


async def party_views(conn: Conn, viewer: str, ids: set[str]) -> dict[str, PartyView]:
    """How `viewer` stands to each of `ids` (the participants what it reads names), in one round trip."""
    if not ids:
        return {}
    rows = await conn.fetch(PARTY_VIEWS, viewer, sorted(ids))
    return {r["id"]: PartyView(r["kind"], r["disclosure"], r["counterparty"]) for r in rows}


LOT_AS_READ_BY = f"""
WITH RECURSIVE walk(id, lot, depth, root) AS (
  SELECT o.lot_id, true, 1, i.transformation_id
  FROM transformation_inputs i JOIN transformation_outputs o USING (transformation_id)
  WHERE i.lot_id = $1 AND $3::int >= 1
  UNION
  SELECT s.id, s.lot, s.depth, walk.root FROM walk CROSS JOIN LATERAL (
    SELECT h.transformation_id AS id, false AS lot, walk.depth FROM transformation_inputs h
    WHERE walk.lot AND walk.depth < $3::int AND h.lot_id = walk.id
    UNION ALL
    SELECT n.lot_id, true, walk.depth + 1 FROM transformation_outputs n
    WHERE NOT walk.lot AND n.transformation_id = walk.id
  ) s
)
SELECT {LOT_COLUMNS},
       EXISTS (SELECT 1 FROM lot_holders h WHERE h.lot_id = $1 AND h.participant_id = $2) AS held,
       ARRAY(SELECT DISTINCT w.root FROM walk w JOIN lot_holders h ON h.lot_id = w.id
             WHERE w.lot AND h.participant_id = $2) AS fed
FROM lots WHERE lot_id = $1
"""
"""The lot, whether participant $2 holds or held it (`held`), and the transformations of it (as an input) through
which its material reached a lot $2 holds or held, at most $3 steps down (`fed`): `lot_visible_sql`'s walk from the
lot, each path told apart by the transformation it left the lot by. $2 may read the lot when `held` or `fed`."""


async def lot_as_read_by(
    conn: Conn, lot_id: str, participant_id: str, max_depth: int
) -> tuple[asyncpg.Record | None, bool, frozenset[str]]:
    """See LOT_AS_READ_BY: (the lot, held, fed); (None, False, {}) when there is no such lot."""
    r = await conn.fetchrow(LOT_AS_READ_BY, lot_id, participant_id, max_depth)
    if r is None:
        return None, False, frozenset()
    return r, bool(r["held"]), frozenset(r["fed"])


LOT_IF_READABLE = f"SELECT {LOT_COLUMNS} FROM lots WHERE lot_id = $1 AND ({lot_visible_sql('$3')})"


async def lot_if_readable(conn: Conn, lot_id: str, participant_id: str, max_depth: int) -> asyncpg.Record | None:
    """The lot if participant $2 may read it (`shared.visibility.lot_visible_sql`), in one statement: None alike
    for a lot it may not read and for none at all."""
    return await conn.fetchrow(LOT_IF_READABLE, lot_id, participant_id, max_depth)


GRANT_OPENS_LOT = grant_opens_lot_sql("$1", "$2", "$3", "$4")
LOT_IF_OPENED = f"SELECT {LOT_COLUMNS} FROM lots WHERE lot_id = $1 AND ({GRANT_OPENS_LOT})"


async def lot_if_opened(
    conn: Conn, lot_id: str, lots: list[str], participants: list[str], max_depth: int
) -> asyncpg.Record | None:
    """The lot if a regulator's grant opens it, in one statement (None alike for a closed lot and for none)."""
    return await conn.fetchrow(LOT_IF_OPENED, lot_id, lots, participants, max_depth)


async def grant_opens(conn: Conn, lot_id: str, lots: list[str], participants: list[str], max_depth: int) -> bool:
    """Does a regulator's grant (its lots and participants) open this lot (`shared.visibility.grant_opens_lot_sql`)?"""
    return bool(await conn.fetchval(GRANT_OPENS_LOT, lot_id, lots, participants, max_depth))


OPENED_AMONG = f"SELECT g.lot_id FROM ({grant_lots_sql('$1', '$2', '$3')}) g WHERE g.lot_id = ANY($4::text[])"


async def opened_among(
    conn: Conn, lots: list[str], participants: list[str], max_depth: int, lot_ids: list[str]
) -> set[str]:
    """Which of `lot_ids` a regulator's grant opens (`shared.visibility.grant_lots_sql`)."""
    return {r["lot_id"] for r in await conn.fetch(OPENED_AMONG, lots, participants, max_depth, lot_ids)}


# --- products (issue 25) ----------------------------------------------------------------------------------------

PRODUCT_COLUMNS = "product_id, owner, name, gtin, mineral, description, registered_at, updated_at, created_seq"

LOCK_OWNER_PRODUCTS = "SELECT pg_advisory_xact_lock(hashtextextended('custody.products:' || $1::text, 0))"
"""Serialises one owner's product writes in their transactions: a product's id is scoped by its owner's prefix and
its GTIN unique per owner, so every clash is between two writes of one owner, and the check after this lock sees
the other's committed row (the unique indexes stay the last word)."""

PRODUCT_CLASHES = """
SELECT EXISTS (SELECT 1 FROM products WHERE product_id = $1) AS id_taken,
       (SELECT product_id FROM products WHERE owner = $2 AND gtin = $3::text AND product_id <> $1) AS gtin_of
"""


async def product_clashes(conn: Conn, product_id: str, owner: str, gtin: str | None) -> tuple[bool, str | None]:
    """Under the owner's lock (taken here): is `product_id` taken, and which other product of the owner has `gtin`."""
    await conn.execute(LOCK_OWNER_PRODUCTS, owner)
    r = await conn.fetchrow(PRODUCT_CLASHES, product_id, owner, gtin)
    assert r is not None
    return bool(r["id_taken"]), r["gtin_of"]


INSERT_PRODUCT = """
INSERT INTO products (product_id, owner, name, gtin, mineral, description, registered_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
"""
UPDATE_PRODUCT = "UPDATE products SET name = $2, gtin = $3, description = $4, updated_at = $5 WHERE product_id = $1"

PRODUCT_NAMED = f"""
SELECT {PRODUCT_COLUMNS} FROM products p
WHERE p.product_id = ANY({lot_named("$1::text", "$2::text")}) ORDER BY p.product_id = $1::text LIMIT 1
"""


async def product_named(conn: Conn, product_id: str, caller: str) -> asyncpg.Record | None:
    """The product `caller` names `product_id` (a bare id: its own `<prefix>:<id>` first, then the exact id), whoever
    owns it: the caller decides who may see it."""
    return await conn.fetchrow(PRODUCT_NAMED, product_id, caller)


async def list_products(conn: Conn, *, owner: str | None, after: int, limit: int) -> list[asyncpg.Record]:
    where: list[str] = ["created_seq > $1"]
    args: list[Any] = [after]
    if owner is not None:
        args.append(owner)
        where.append("owner = $2")
    args.append(limit)
    sql = f"SELECT {PRODUCT_COLUMNS} FROM products WHERE {' AND '.join(where)} ORDER BY created_seq LIMIT ${len(args)}"
    return list(await conn.fetch(sql, *args))


async def product_names(conn: Conn, product_ids: list[str]) -> dict[str, str]:
    """The current names of these products, by id."""
    rows = await conn.fetch("SELECT product_id, name FROM products WHERE product_id = ANY($1::text[])", product_ids)
    return {r["product_id"]: r["name"] for r in rows}


def product_out(r: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in PRODUCT_COLUMNS.split(", ") if k != "created_seq"}
