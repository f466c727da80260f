"""The audit projection: what the consumer does with each new event, inside the consumer's transaction.

Every event is kept in `received_events` (the evidence trail). Registry events update participants, certifications
and the CAHRA list; custody events update lots, shipments, genealogy and holders; then the rules of
`audit/rules.py` run and each finding becomes a flag, once per (rule, cause).

Evaluating "with what was known then" and staying the same on replay: registry facts carry `known_at` (the time of
the event that told us). A lot's origin and a transformation's smelter are judged at every moment their reference
data changed from the custody event on ("horizons"), and judged again whenever such data arrives (re-screening).
The flags are the union, so live processing and a replay from offset 0 reach the same set whatever order the two
topics interleave in.

How a batch is applied (the same code for the live consumer and `python -m audit.replay`):
1. each event is applied to `State`, the part of the projection the rules read, kept in memory (loaded from the
   tables once, on the first batch). The handlers are plain functions: no database round trip per event. What they
   change is written down in `Changes` (rows to insert or update, findings), and every change to the state and to
   the pending rows goes through a `Journal` so it can be taken back;
2. an event whose data cannot be applied (a missing field, a bad date...) is taken back alone and kept in
   `received_events` only: it never blocks its partition nor spoils the rest of the batch;
3. the batch's changes are written with one statement per table (COPY for the events and for the rows the state
   knows to be new, `unnest` arrays otherwise), in a savepoint. If PostgreSQL refuses them (a value it cannot
   store), the savepoint and the whole batch's in-memory changes are taken back and the batch is applied again one
   event at a time, each in its own savepoint, so only the offending event is left out;
4. if the consumer's transaction does not commit after all (the connection broke, the commit failed), the consumer
   calls `discard()`: the in-memory state is dropped and loaded again from the tables on the next batch.
A live batch too small for COPY takes a shorter way first (`stage_batch`): the same statements become the CTEs of
one statement that the consumer starts with the events' `processed_events` rows (no BEGIN, savepoint or COMMIT: one
round trip instead of about ten). The flags' audit.flag.raised events go into the outbox in that statement too, for
the flags it really inserted. If it writes nothing (an event processed before, a value PostgreSQL refuses), the
batch is taken back out of memory and applied as above.

The in-memory state assumes this process is the only writer of the projection tables of its database: one audit
consumer per audit database (the consumer group has one member), as deployed.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import sys
import time
import uuid
from collections.abc import Callable, MutableSet, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter

from audit import rules
from audit.rules import Area, Cert, Finding, Thresholds
from shared.consumer import REFUSALS, Delivered, Staged
from shared.events import CloudEvent, new_event
from shared.outbox import enqueue_raw, outbox_columns
from shared.sql import Statement
from shared.topics import AUDIT_FLAGS

log = logging.getLogger("audit.projection")
MALFORMED = Counter("audit_malformed_events_total", "Events whose data the projection could not apply", ["type"])

SOURCE = "/audit"
FLAG_NAMESPACE = uuid.UUID("6f0d1c6e-4b8e-4f0a-9a57-2f1d3c0b8e11")
GRAM = Decimal("0.001")
NUMERIC_18_3_LIMIT = Decimal(10) ** 15  # numeric(18, 3): at most 15 digits before the point

# What PostgreSQL refuses because of one event's values: that event is left out, the rest of the batch goes in.
DATA_ERRORS = REFUSALS

# --- the batch's writes: one statement per table --------------------------------------------------------------

LOT_COLUMNS = (
    "lot_id",
    "mineral",
    "form",
    "mass_kg",
    "origin_kind",
    "origin_participant",
    "origin_country",
    "origin_region",
    "origin_mining_type",
    "custodian",
    "origin_event",
    "origin_at",
    "recorded_at",
    "last_custody_at",
)
SHIPMENT_COLUMNS = (
    "shipment_id",
    "lot_id",
    "sender",
    "receiver",
    "mass_kg",
    "seal",
    "shipped_at",
    "max_transit_days",
    "transit_countries",
    "status",
    "event_id",
    "recorded_at",
)
TRANSFORMATION_COLUMNS = (
    "transformation_id",
    "kind",
    "actor",
    "actor_kind",
    "occurred_at",
    "outputs",
    "event_id",
    "recorded_at",
)
GENEALOGY_COLUMNS = ("parent", "child", "transformation_id")
RECEIVED_COLUMNS = ("event_id", "source", "type", "subject", "key", "time", "data", "topic", "partition", "offset")
INSERT_RECEIVED_SQL = """
INSERT INTO received_events (event_id, source, type, subject, key, time, data, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::json[],
                     $8::text[], $9::int[], $10::bigint[])
"""
# COPY takes two round trips where an INSERT takes one: it pays off for big batches (a backlog, a replay), while a
# live trickle of a few events a batch is written with INSERTs, which keeps a write's flag a few milliseconds sooner.
COPY_FROM_EVENTS = 64
UPSERT_PARTICIPANTS_SQL = """
INSERT INTO participants (id, kind, name, country, region, mining_type, annual_capacity_kg, version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
                     $8::bigint[])
ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, country = EXCLUDED.country,
    region = EXCLUDED.region, mining_type = EXCLUDED.mining_type, annual_capacity_kg = EXCLUDED.annual_capacity_kg,
    version = EXCLUDED.version
WHERE participants.version <= EXCLUDED.version
"""
INSERT_CERTIFICATIONS_SQL = """
INSERT INTO certifications (id, participant_id, scheme, value, valid_from, valid_until, known_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::date[], $7::timestamptz[])
ON CONFLICT (id) DO NOTHING
"""
UPSERT_CAHRA_SQL = """
INSERT INTO cahra_areas (id, country, region, effective_from, effective_to, source, known_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::text[], $7::timestamptz[])
ON CONFLICT (id) DO UPDATE SET effective_from = EXCLUDED.effective_from, effective_to = EXCLUDED.effective_to,
    source = EXCLUDED.source
"""
INSERT_LOTS_SQL = """
INSERT INTO lots (lot_id, mineral, form, mass_kg, origin_kind, origin_participant, origin_country, origin_region,
                  origin_mining_type, custodian, origin_event, origin_at, recorded_at, last_custody_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                     $14::timestamptz[])
ON CONFLICT (lot_id) DO NOTHING
"""
UPDATE_LOTS_SQL = """
UPDATE lots SET custodian = u.custodian, last_custody_at = greatest(lots.last_custody_at, u.at)
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(lot_id, custodian, at)
WHERE lots.lot_id = u.lot_id
"""
INSERT_HOLDERS_SQL = """
INSERT INTO lot_holders (lot_id, participant_id) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING
"""
INSERT_SHIPMENTS_SQL = """
INSERT INTO shipments (shipment_id, lot_id, sender, receiver, mass_kg, seal, shipped_at, max_transit_days,
                       transit_countries, status, event_id, recorded_at)
SELECT s.shipment_id, s.lot_id, s.sender, s.receiver, s.mass_kg, s.seal, s.shipped_at, s.max_transit_days,
       ARRAY(SELECT v FROM jsonb_array_elements_text(s.countries) WITH ORDINALITY AS x(v, i) ORDER BY i), s.status,
       s.event_id, s.recorded_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::timestamptz[],
            $8::int[], $9::jsonb[], $10::text[], $11::text[], $12::timestamptz[])
     WITH ORDINALITY AS s(shipment_id, lot_id, sender, receiver, mass_kg, seal, shipped_at, max_transit_days,
                          countries, status, event_id, recorded_at, n)
ORDER BY s.n
ON CONFLICT DO NOTHING
"""
RECEIVE_SHIPMENTS_SQL = "UPDATE shipments SET status = 'received' WHERE shipment_id = ANY($1::text[])"
INSERT_TRANSFORMATIONS_SQL = """
INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, recorded_at)
SELECT t.transformation_id, t.kind, t.actor, t.actor_kind, t.occurred_at,
       ARRAY(SELECT v FROM jsonb_array_elements_text(t.outputs) WITH ORDINALITY AS x(v, i) ORDER BY i), t.event_id,
       t.recorded_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], $7::text[],
            $8::timestamptz[])
     WITH ORDINALITY AS t(transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, recorded_at, n)
ORDER BY t.n
ON CONFLICT DO NOTHING
"""
INSERT_GENEALOGY_SQL = """
INSERT INTO genealogy (parent, child, transformation_id) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
"""
INSERT_FLAGS_SQL = """
INSERT INTO flags (id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, raised_at)
SELECT f.id, f.rule, f.cause, f.severity, f.lot_id,
       ARRAY(SELECT v FROM jsonb_array_elements_text(f.lot_ids) WITH ORDINALITY AS x(v, i) ORDER BY i),
       ARRAY(SELECT v FROM jsonb_array_elements_text(f.participants) WITH ORDINALITY AS x(v, i) ORDER BY i),
       f.summary, f.evidence, f.raised_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[],
            $9::jsonb[], $10::timestamptz[])
     WITH ORDINALITY AS f(id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, raised_at, n)
ORDER BY f.n
ON CONFLICT (rule, cause) DO NOTHING
RETURNING id
"""
# In the one-statement path (`stage_batch`): the audit.flag.raised events of the flags the CTE `new_flags` inserted.
INSERT_FLAG_EVENTS_SQL = """
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data)
SELECT o.event_id, o.topic, o.key, o.type, o.source, o.subject, o.time, o.dataschema, o.data
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[],
            $9::jsonb[], $10::text[])
     WITH ORDINALITY AS o(event_id, topic, key, type, source, subject, time, dataschema, data, flag_id, n)
WHERE o.flag_id IN (SELECT id FROM new_flags)
ORDER BY o.n
"""


def flag_id(rule: str, cause: str) -> str:
    """Derived from what the flag is about, so a rebuilt projection gives every flag the same id."""
    return str(uuid.uuid5(FLAG_NAMESPACE, f"{rule}:{cause}"))


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def _utc(t: datetime) -> datetime:
    """As PostgreSQL gives a timestamptz back (UTC), so evidence reads the same from memory as from the table."""
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {t.isoformat()}")
    return t.astimezone(UTC)


def _i(v: str) -> str:
    """One copy of strings many rows repeat (participant ids, countries): the state holds references only."""
    return sys.intern(v)


def _oi(v: str | None) -> str | None:
    return None if v is None else sys.intern(v)


def _d(v: Any) -> Decimal:
    return Decimal(str(v))


def _kg(v: Any) -> Decimal:
    """A mass as the `numeric(18, 3)` columns keep it."""
    m = _d(v).quantize(GRAM)
    if abs(m) >= NUMERIC_18_3_LIMIT:
        raise ArithmeticError(f"mass {v!r} does not fit numeric(18, 3)")
    return m


def _date(s: str | None) -> date | None:
    return date.fromisoformat(s) if s else None


# --- an undo log for plain dicts, sets and lists ------------------------------------------------------------------

_DEL, _RESTORE, _DISCARD, _POP, _REMOVE_AT, _ADD = range(6)


class Journal:
    """Every change to the in-memory state and to the pending rows, so that one event's (or a batch's) changes can
    be taken back exactly: `mark()` before, `undo(mark)` to return there."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[int, Any, Any, Any]] = []

    def mark(self) -> int:
        return len(self.ops)

    def set(self, d: dict[Any, Any], k: Any, v: Any) -> None:
        if k in d:
            self.ops.append((_RESTORE, d, k, d[k]))
        else:
            self.ops.append((_DEL, d, k, None))
        d[k] = v

    def add(self, s: MutableSet[Any], k: Any) -> None:
        if k not in s:
            s.add(k)
            self.ops.append((_DISCARD, s, k, None))

    def discard(self, s: MutableSet[Any], k: Any) -> None:
        if k in s:
            s.discard(k)
            self.ops.append((_ADD, s, k, None))

    def append(self, lst: list[Any], v: Any) -> None:
        lst.append(v)
        self.ops.append((_POP, lst, None, None))

    def insort(self, lst: list[Any], v: Any) -> None:
        i = bisect.bisect_right(lst, v)
        lst.insert(i, v)
        self.ops.append((_REMOVE_AT, lst, i, None))

    def undo(self, mark: int = 0) -> None:
        ops = self.ops
        while len(ops) > mark:
            kind, c, k, v = ops.pop()
            if kind == _DEL:
                del c[k]
            elif kind == _RESTORE:
                c[k] = v
            elif kind == _DISCARD:
                c.discard(k)
            elif kind == _POP:
                c.pop()
            elif kind == _ADD:
                c.add(k)
            else:
                del c[k]

    def clear(self) -> None:
        self.ops.clear()

    def forget(self, mark: int) -> None:
        """What happened before `mark` is committed: it can no longer be taken back (later marks move down)."""
        del self.ops[:mark]


# --- what the rules read, in memory -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MineLot:
    """An origin lot, with what re-screening its origin needs."""

    lot_id: str
    event_id: str
    mine: str
    country: str | None
    region: str | None
    mining_type: str | None
    origin_at: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Transit:
    """A shipment routed through other countries (re-screened when such a country is listed)."""

    lot_id: str
    event_id: str
    countries: tuple[str, ...]
    shipped_at: datetime
    sender: str
    receiver: str


@dataclass(frozen=True, slots=True)
class Smelting:
    """A transformation by a smelter or refiner (re-screened when its certifications change)."""

    event_id: str
    actor: str
    actor_kind: str
    occurred_at: datetime
    outputs: tuple[str, ...]
    recorded_at: datetime


@dataclass(slots=True)
class State:
    """The part of the projection the rules read. The tables hold everything; this is rebuilt from them by
    `load` and kept in step with them batch by batch."""

    capacities: dict[str, tuple[int, Any]] = field(default_factory=dict)  # participant -> (version, kg per mineral)
    cert_ids: set[str] = field(default_factory=set)
    certs: dict[str, list[tuple[datetime, str, str, str, date, date | None]]] = field(default_factory=dict)
    areas: dict[str, tuple[datetime, Area]] = field(default_factory=dict)  # id -> (known_at, area)
    areas_by_country: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)  # sorted (known_at, id)
    lots: dict[str, datetime] = field(default_factory=dict)  # every lot -> last_custody_at
    mine_lots: dict[str, MineLot] = field(default_factory=dict)
    lots_by_mine: dict[str, list[str]] = field(default_factory=dict)
    lots_by_country: dict[str, list[str]] = field(default_factory=dict)
    # (mine, mineral, UTC year) -> the origin lots in production order (origin_at, recorded_at, lot_id, kg), total
    production: dict[tuple[str, str, int], list[tuple[datetime, datetime, str, Decimal]]] = field(default_factory=dict)
    produced_kg: dict[tuple[str, str, int], Decimal] = field(default_factory=dict)
    capacity_flagged: set[str] = field(default_factory=set)  # causes of capacity_exceeded flags
    open_shipments: set[str] = field(default_factory=set)  # shipped, not received yet
    transits: dict[str, Transit] = field(default_factory=dict)
    transits_by_country: dict[str, list[str]] = field(default_factory=dict)
    transformations: set[str] = field(default_factory=set)
    smeltings: dict[str, Smelting] = field(default_factory=dict)
    smeltings_by_actor: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    async def load(cls, conn: asyncpg.Connection) -> State:
        s = cls()
        for r in await conn.fetch("SELECT id, version, annual_capacity_kg::text AS cap FROM participants"):
            s.capacities[r["id"]] = (r["version"], orjson.loads(r["cap"]) if r["cap"] else {})
        for r in await conn.fetch(
            "SELECT id, participant_id, scheme, value, valid_from, valid_until, known_at FROM certifications"
        ):
            s.cert_ids.add(r["id"])
            row = (r["known_at"], r["id"], r["scheme"], r["value"], r["valid_from"], r["valid_until"])
            bisect.insort(s.certs.setdefault(r["participant_id"], []), row)
        for r in await conn.fetch(
            "SELECT id, country, region, effective_from, effective_to, source, known_at FROM cahra_areas"
        ):
            area = Area(r["id"], r["country"], r["region"], r["effective_from"], r["effective_to"], r["source"])
            s.areas[r["id"]] = (r["known_at"], area)
            bisect.insort(s.areas_by_country.setdefault(r["country"], []), (r["known_at"], r["id"]))
        for r in await conn.fetch("SELECT lot_id, last_custody_at FROM lots"):
            s.lots[r["lot_id"]] = r["last_custody_at"]
        for r in await conn.fetch(
            "SELECT lot_id, origin_event, origin_participant, origin_country, origin_region, origin_mining_type, "
            "origin_at, recorded_at, mineral, mass_kg FROM lots WHERE origin_kind = 'mine'"
        ):
            lot = MineLot(
                r["lot_id"],
                r["origin_event"],
                _i(r["origin_participant"]),
                _oi(r["origin_country"]),
                _oi(r["origin_region"]),
                _oi(r["origin_mining_type"]),
                r["origin_at"],
                r["recorded_at"],
            )
            s.mine_lots[lot.lot_id] = lot
            s.lots_by_mine.setdefault(lot.mine, []).append(lot.lot_id)
            s.lots_by_country.setdefault(lot.country or "", []).append(lot.lot_id)
            key = (lot.mine, _i(r["mineral"]), lot.origin_at.astimezone(UTC).year)
            bisect.insort(s.production.setdefault(key, []), (lot.origin_at, lot.recorded_at, lot.lot_id, r["mass_kg"]))
            s.produced_kg[key] = s.produced_kg.get(key, Decimal(0)) + r["mass_kg"]
        for r in await conn.fetch("SELECT cause FROM flags WHERE rule = 'capacity_exceeded'"):
            s.capacity_flagged.add(r["cause"])
        for r in await conn.fetch("SELECT shipment_id FROM shipments WHERE status = 'in_transit'"):
            s.open_shipments.add(r["shipment_id"])
        for r in await conn.fetch(
            "SELECT shipment_id, lot_id, event_id, transit_countries, shipped_at, sender, receiver FROM shipments "
            "WHERE cardinality(transit_countries) > 0"
        ):
            t = Transit(
                r["lot_id"],
                r["event_id"],
                tuple(map(_i, r["transit_countries"])),
                r["shipped_at"],
                _i(r["sender"]),
                _i(r["receiver"]),
            )
            s.transits[r["shipment_id"]] = t
            for c in dict.fromkeys(t.countries):
                s.transits_by_country.setdefault(c, []).append(r["shipment_id"])
        for r in await conn.fetch(
            "SELECT transformation_id, event_id, actor, actor_kind, occurred_at, outputs, recorded_at, "
            "actor_kind IN ('smelter', 'refiner') AS smelting FROM transformations"
        ):
            s.transformations.add(r["transformation_id"])
            if r["smelting"]:
                s.smeltings[r["transformation_id"]] = Smelting(
                    r["event_id"],
                    _i(r["actor"]),
                    _i(r["actor_kind"]),
                    r["occurred_at"],
                    tuple(r["outputs"]),
                    r["recorded_at"],
                )
                s.smeltings_by_actor.setdefault(r["actor"], []).append(r["transformation_id"])
        return s


@dataclass(slots=True)
class Changes:
    """The rows one batch (or one event, when applied alone) writes, in the order the statements run."""

    received: list[tuple[Any, ...]] = field(default_factory=list)
    participants: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    certs: list[tuple[Any, ...]] = field(default_factory=list)
    areas: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    lots: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # new lots (custodian, last_custody_at last)
    lot_updates: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # existing lots: custodian, at
    holders: dict[tuple[str, str], None] = field(default_factory=dict)
    shipments: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # new shipments (status 10th)
    received_shipments: dict[str, None] = field(default_factory=dict)  # existing shipments now received
    transformations: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    genealogy: dict[tuple[str, str, str], None] = field(default_factory=dict)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)  # the first finding per (rule, cause)


@dataclass(slots=True)
class Prepared:
    """A batch applied in memory and not written yet (`Projection.prepare`)."""

    batch: Sequence[Delivered]
    changes: Changes
    bad: list[tuple[CloudEvent, Exception]]  # events whose data could not be applied (kept as received only)
    mark: int  # the journal's length before it: `take_back` returns there


Handler = Callable[["Projection", CloudEvent], None]
Doc = dict[str, Any]  # a flag as its audit.flag.raised event carries it


@dataclass
class Projection:
    """Applies batches of events; collects what was raised so it can be broadcast after the commit."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    publish: bool = True  # a replay rebuilds flags without publishing them again
    raised: list[dict[str, Any]] = field(default_factory=list)
    seen: list[CloudEvent] = field(default_factory=list)
    state: State | None = None
    malformed: int = 0
    load_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.journal = Journal()
        self.changes = Changes()

    def discard(self) -> None:
        """The consumer's transaction did not commit (or may not have): forget the in-memory state."""
        self.state = None
        self.journal.clear()
        self.changes = Changes()

    def _begin(self) -> None:
        """Before a batch (`apply_batch`, `stage_batch`): the previous one committed (else `discard()` was called)."""
        self.raised.clear()  # what a rolled-back batch collected is gone with it
        self.seen.clear()
        self.journal.clear()
        self.changes = Changes()

    def _end(self, batch: Sequence[Delivered]) -> None:
        """After a batch took effect: nothing of it can be taken back; the live stream gets its events."""
        self.changes = Changes()
        self.journal.clear()
        self.seen.extend(d.event for d in batch)

    def _undo_to(self, mark: int) -> None:
        """Take back every change to the state and the pending rows since `mark`."""
        self.journal.undo(mark)
        self.changes = Changes()
        self.raised.clear()

    async def apply_batch(self, conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
        self._begin()
        try:
            if self.state is None:
                t0 = time.perf_counter()
                self.state = await State.load(conn)
                self.load_seconds += time.perf_counter() - t0
            bad = [(d.event, exc) for d in batch if (exc := self._apply(d)) is not None]
            try:
                async with conn.transaction():  # a savepoint: a refused batch is applied again one event at a time
                    await self._write(conn, copy=len(batch) >= COPY_FROM_EVENTS)
            except DATA_ERRORS as exc:
                log.warning("PostgreSQL refused a batch of %d events (%r); applying them one by one", len(batch), exc)
                self._undo_to(0)
                await self._apply_one_by_one(conn, batch)
            else:
                for e, err in bad:
                    self._malformed(e, err)
        except BaseException:
            self.discard()  # the transaction will not commit this batch: the state must not keep it either
            raise
        self._end(batch)

    def _apply(self, d: Delivered, effects: bool = True) -> Exception | None:
        """One event into the state and the pending changes. If its data cannot be applied, its effects are taken
        back (the event itself is still kept) and the reason is returned."""
        e = d.event
        j = self.journal
        j.append(
            self.changes.received,
            (
                e.id,
                e.source,
                e.type,
                e.subject,
                e.key,
                e.time,
                d.raw.decode() if d.raw else _json(e.data),
                d.topic,
                d.partition,
                d.offset,
            ),
        )
        handler = HANDLERS.get(e.type) if effects else None
        if handler is None:
            return None
        mark = j.mark()
        try:
            handler(self, e)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with this event's data: keep it, skip its effect
            j.undo(mark)
            return exc
        return None

    def _malformed(self, e: CloudEvent, exc: BaseException) -> None:
        self.malformed += 1
        MALFORMED.labels(e.type).inc()
        log.error("event %s (%s) could not be applied and was kept in received_events only: %r", e.id, e.type, exc)

    async def _apply_one_by_one(self, conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
        """Each event in its own savepoint: only what PostgreSQL refuses is left out."""
        for d in batch:
            self.changes = Changes()
            mark, raised = self.journal.mark(), len(self.raised)
            err = self._apply(d)
            try:
                async with conn.transaction():
                    await self._write(conn, copy=False)
            except DATA_ERRORS as exc:
                self.journal.undo(mark)
                del self.raised[raised:]
                err = exc
            else:
                if err is not None:
                    self._malformed(d.event, err)
                continue
            self._malformed(d.event, err)
            self.changes = Changes()  # keep at least the event itself, if PostgreSQL can store it
            self._apply(d, effects=False)
            try:
                async with conn.transaction():
                    await self._write(conn, copy=False)
            except DATA_ERRORS as exc:
                log.error("event %s (%s) cannot be stored at all: %r", d.event.id, d.event.type, exc)

    def drain(self) -> tuple[list[dict[str, Any]], list[CloudEvent]]:
        """What the last committed batch raised and saw (for the live stream); empties the lists."""
        out = (list(self.raised), list(self.seen))
        self.raised.clear()
        self.seen.clear()
        return out

    # --- writing a batch ------------------------------------------------------------------------------------------

    def _parts(self, copy: bool, changes: Changes | None = None) -> list[tuple[str, str, Any, Any]]:
        """The pending changes, one statement per table, in the order they are written: ("copy", table, records,
        columns) for rows that go in with COPY, ("sql", name, statement, arguments) for the others. With `copy`, the
        rows the state knows to be new (lots, shipments, transformations and their genealogy) and the events go in
        with COPY, half the cost of an INSERT; should one exist after all, the batch is refused and applied again one
        event at a time with `copy=False`, whose statements keep what is there (ON CONFLICT DO NOTHING), as the state
        assumed."""
        c = changes or self.changes
        parts: list[tuple[str, str, Any, Any]] = []
        if c.received and copy:  # the events themselves, the bulk of a batch's bytes
            parts.append(("copy", "received_events", c.received, RECEIVED_COLUMNS))
        elif c.received:
            parts.append(("sql", "received", INSERT_RECEIVED_SQL, _columns(c.received, len(RECEIVED_COLUMNS))))
        if c.participants:
            parts.append(("sql", "participants", UPSERT_PARTICIPANTS_SQL, _columns(list(c.participants.values()), 8)))
        if c.certs:
            parts.append(("sql", "certifications", INSERT_CERTIFICATIONS_SQL, _columns(c.certs, 7)))
        if c.areas:
            parts.append(("sql", "areas", UPSERT_CAHRA_SQL, _columns(list(c.areas.values()), 7)))
        if c.lots and copy:
            parts.append(("copy", "lots", list(c.lots.values()), LOT_COLUMNS))
        elif c.lots:
            parts.append(("sql", "lots", INSERT_LOTS_SQL, _columns(list(c.lots.values()), 14)))
        if c.lot_updates:
            updates = [
                list(c.lot_updates),
                [u[0] for u in c.lot_updates.values()],
                [u[1] for u in c.lot_updates.values()],
            ]
            parts.append(("sql", "lot_updates", UPDATE_LOTS_SQL, updates))
        if c.holders:
            parts.append(("sql", "holders", INSERT_HOLDERS_SQL, _columns(list(c.holders), 2)))
        if c.shipments and copy:
            parts.append(("copy", "shipments", list(c.shipments.values()), SHIPMENT_COLUMNS))
        elif c.shipments:
            rows = [(*r[:8], _json(r[8]), *r[9:]) for r in c.shipments.values()]
            parts.append(("sql", "shipments", INSERT_SHIPMENTS_SQL, _columns(rows, 12)))
        if c.received_shipments:
            parts.append(("sql", "received_shipments", RECEIVE_SHIPMENTS_SQL, [list(c.received_shipments)]))
        if c.transformations and copy:
            parts.append(("copy", "transformations", list(c.transformations.values()), TRANSFORMATION_COLUMNS))
        elif c.transformations:
            rows = [(*r[:5], _json(r[5]), *r[6:]) for r in c.transformations.values()]
            parts.append(("sql", "transformations", INSERT_TRANSFORMATIONS_SQL, _columns(rows, 8)))
        if c.genealogy and copy:
            parts.append(("copy", "genealogy", list(c.genealogy), GENEALOGY_COLUMNS))
        elif c.genealogy:
            parts.append(("sql", "genealogy", INSERT_GENEALOGY_SQL, _columns(list(c.genealogy), 3)))
        return parts

    async def _write(self, conn: asyncpg.Connection, copy: bool = True, changes: Changes | None = None) -> None:
        """The pending changes, one statement per table (`_parts`), then the flags."""
        changes = changes or self.changes
        for how, name, what, args in self._parts(copy, changes):
            if how == "copy":
                await conn.copy_records_to_table(name, records=what, columns=args)
            else:
                await conn.execute(what, *args)
        if changes.findings:
            await self.raise_flags(conn, list(changes.findings.values()))

    # --- a replay's pipeline: the next batch applied in memory while PostgreSQL writes this one --------------------

    async def prepare(self, batch: Sequence[Delivered], yield_every: int = 200) -> Prepared:
        """`batch` applied in memory as if every event were new (on top of batches prepared before and not committed
        yet), giving the event loop a turn every `yield_every` events so that a transaction in flight sends its next
        statement. Its rows are written by `write_prepared`; then `committed` or, if that wrote nothing, `take_back`."""
        assert self.state is not None, "the state is loaded first (apply_batch, or State.load)"
        mark = self.journal.mark()
        self.changes = Changes()
        bad: list[tuple[CloudEvent, Exception]] = []
        for i, d in enumerate(batch, 1):
            if (exc := self._apply(d)) is not None:
                bad.append((d.event, exc))
            if yield_every and i % yield_every == 0:
                await asyncio.sleep(0)
        prepared = Prepared(batch, self.changes, bad, mark)
        self.changes = Changes()
        return prepared

    async def write_prepared(self, conn: asyncpg.Connection, prepared: Prepared) -> None:
        """Write a prepared batch inside the caller's transaction (no savepoint: a refusal is raised, the caller
        rolls back, takes the batch back and applies it the careful way). Touches no in-memory state but `raised`."""
        self.raised.clear()
        await self._write(conn, copy=len(prepared.batch) >= COPY_FROM_EVENTS, changes=prepared.changes)

    def committed(self, prepared: Prepared, later: Prepared | None = None) -> None:
        """`prepared` is committed: its changes can no longer be taken back (those of `later` still can)."""
        self.journal.forget(later.mark if later is not None else self.journal.mark())
        if later is not None:
            later.mark = 0
        for e, err in prepared.bad:
            self._malformed(e, err)
        self.seen.clear()
        self.seen.extend(d.event for d in prepared.batch)

    def take_back(self, prepared: Prepared) -> None:
        """`prepared` was not written: it leaves memory, and so does everything prepared after it."""
        self._undo_to(prepared.mark)

    def stage_batch(self, st: Statement, batch: Sequence[Delivered]) -> Staged | None:
        """The live path for a small batch (`shared.consumer`): the batch applied in memory as if every event were new,
        and its writes added to `st`, the flags and their audit.flag.raised events included, so that the consumer
        writes it all in one statement. Declined (None) for a batch big enough for COPY, or before the state is
        loaded. `undo` takes the batch back out of memory when the statement wrote nothing."""
        if self.state is None or len(batch) >= COPY_FROM_EVENTS:
            return None
        self._begin()
        bad = [(d.event, exc) for d in batch if (exc := self._apply(d)) is not None]
        for _, name, sql, args in self._parts(copy=False):
            st.add(f"w_{name}", sql, args)
        ids: list[str] = []
        candidates: list[Doc] = []
        final = "SELECT NULL::text AS id WHERE false"
        if self.changes.findings:
            args, docs = self._flags_to_raise(list(self.changes.findings.values()))
            ids, candidates = args[0], docs(None)
            st.add("new_flags", INSERT_FLAGS_SQL, args)
            if self.publish:
                events = self._flag_events(candidates)
                st.add("new_flag_events", INSERT_FLAG_EVENTS_SQL, [*outbox_columns(AUDIT_FLAGS, events), ids])
            final = "SELECT id FROM new_flags"

        def done(rows: list[asyncpg.Record]) -> None:
            self.raised.extend(candidates[i] for i in _first_inserted(ids, {r["id"] for r in rows}))
            for e, err in bad:
                self._malformed(e, err)
            self._end(batch)

        return Staged(final, done, lambda: self._undo_to(0))

    def _flags_to_raise(
        self, findings: Sequence[Finding]
    ) -> tuple[list[Any], Callable[[Sequence[int] | None], list[Doc]]]:
        """INSERT_FLAGS_SQL's arguments for these findings (raised now: the same time in the table and in the event;
        their ids first), and a function giving the flags at the given positions, or all of them, as their
        audit.flag.raised events carry them."""
        raised_at = datetime.now(UTC)
        ids = [flag_id(f.rule, f.cause) for f in findings]
        participants = [sorted(set(f.participants)) for f in findings]
        args = [
            ids,
            [str(f.rule) for f in findings],
            [f.cause for f in findings],
            [str(f.level) for f in findings],
            [f.lot_id for f in findings],
            [_json(f.lot_ids) for f in findings],
            [_json(p) for p in participants],
            [f.summary for f in findings],
            [_json(f.evidence) for f in findings],
            [raised_at] * len(findings),
        ]

        def docs(positions: Sequence[int] | None) -> list[Doc]:
            at = raised_at.isoformat()
            return [
                {
                    "id": ids[i],
                    "rule": findings[i].rule.value,
                    "cause": findings[i].cause,
                    "severity": findings[i].level.value,
                    "lot_id": findings[i].lot_id,
                    "lot_ids": list(findings[i].lot_ids),
                    "participants": participants[i],
                    "summary": findings[i].summary,
                    "evidence": findings[i].evidence,
                    "status": "open",
                    "raised_at": at,
                }
                for i in (range(len(findings)) if positions is None else positions)
            ]

        return args, docs

    @staticmethod
    def _flag_events(docs: Sequence[dict[str, Any]]) -> list[CloudEvent]:
        return [new_event("audit.flag.raised", source=SOURCE, key=f["lot_id"], subject=f["id"], data=f) for f in docs]

    async def raise_flags(self, conn: asyncpg.Connection, findings: Sequence[Finding]) -> None:
        """Insert the flags of these findings (once per (rule, cause): the first one wins) and, for those that are
        new, put them in the outbox for `audit.flags` and in `raised` for the live stream."""
        if not findings:
            return
        args, docs = self._flags_to_raise(findings)
        rows = await conn.fetch(INSERT_FLAGS_SQL, *args)
        new = docs(_first_inserted(args[0], {r["id"] for r in rows})) if rows else []  # a replay: 1 finding in 5
        if self.publish and new:
            await enqueue_raw(conn, AUDIT_FLAGS, self._flag_events(new))
        self.raised.extend(new)

    # --- the handlers: in memory, no I/O ------------------------------------------------------------------------

    def _find(self, findings: Sequence[Finding]) -> None:
        fs = self.changes.findings
        for f in findings:
            key = (f.rule, f.cause)  # the rule is a StrEnum: the same key as its value
            if key not in fs:
                self.journal.set(fs, key, f)

    def on_participant(self, e: CloudEvent) -> None:
        p = e.data
        pid, version = p["id"], int(p.get("version", 1))
        cap = p.get("annual_capacity_kg") or {}
        row = (
            pid,
            p["kind"],
            p["name"],
            p["country"],
            p.get("region"),
            p.get("mining_type"),
            orjson.dumps(cap).decode(),
            version,
        )
        s = self._state
        known = s.capacities.get(pid)
        if known is not None and known[0] > version:
            return  # an older version than what is known: the table keeps the newer one
        # The capacity as the table gives it back (JSONB): loaded again from the JSON we write.
        self.journal.set(s.capacities, pid, (version, orjson.loads(row[6])))
        self.journal.set(self.changes.participants, pid, row)

    def on_certification(self, e: CloudEvent) -> None:
        c = e.data
        cid, who = c["id"], c["participant_id"]
        value = c.get("status") or c.get("level")
        valid_from, valid_until = date.fromisoformat(c["valid_from"]), _date(c.get("valid_until"))
        if value is None:
            raise ValueError("a certification without status or level")
        s, j = self._state, self.journal
        if cid not in s.cert_ids:  # a certification is recorded once; the first record stays
            known_at = _utc(e.time)
            j.add(s.cert_ids, cid)
            if who not in s.certs:
                j.set(s.certs, who, [])
            j.insort(s.certs[who], (known_at, cid, c["scheme"], value, valid_from, valid_until))
            j.append(self.changes.certs, (cid, who, c["scheme"], value, valid_from, valid_until, known_at))
        # Re-screen what this participant did: the lots it mined, the transformations it ran.
        for lot_id in s.lots_by_mine.get(who, ()):
            self.screen_origin(lot_id)
        for tid in s.smeltings_by_actor.get(who, ()):
            self.screen_smelter(tid)

    def on_cahra(self, e: CloudEvent) -> None:
        a = e.data["area"]
        aid, country, region = a["id"], a["country"], a.get("region")
        start, end, source = date.fromisoformat(a["effective_from"]), _date(a.get("effective_to")), a["source"]
        if not all(isinstance(v, str) for v in (aid, country, source)) or not isinstance(region, str | None):
            raise TypeError("area id, country, region and source must be strings")
        s, j = self._state, self.journal
        known = s.areas.get(aid)
        if known is None:
            known_at = _utc(e.time)
            area = Area(aid, country, region, start, end, source)
            if country not in s.areas_by_country:
                j.set(s.areas_by_country, country, [])
            j.insort(s.areas_by_country[country], (known_at, aid))
        else:  # a correction: the listing dates and source change, the place and when it became known do not
            known_at, old = known
            area = Area(aid, old.country, old.region, start, end, source)
        j.set(s.areas, aid, (known_at, area))
        j.set(self.changes.areas, aid, (aid, area.country, area.region, start, end, source, known_at))
        # Re-screen the lots from that country or region, and shipments routed through it.
        for lot_id in s.lots_by_country.get(country, ()):
            if region is None or s.mine_lots[lot_id].region == region:
                self.screen_origin(lot_id)
        if region is None:
            for sid in s.transits_by_country.get(country, ()):
                self.screen_transit(sid)

    def _new_lot(
        self,
        e: CloudEvent,
        *,
        origin_kind: str,
        origin: dict[str, Any],
        mass_kg: Any,
        custodian: str,
        mineral: str | None = None,
        form: str | None = None,
    ) -> bool:
        """Returns whether the lot is new (an existing lot id is left as it is)."""
        d = e.data
        lot_id = d["lot_id"]
        at = _utc(_dt(d["occurred_at"]) or e.time)
        row = (
            lot_id,
            mineral or d["mineral"],
            form or d["form"],
            _kg(mass_kg),
            origin_kind,
            origin.get("participant_id"),
            origin.get("country"),
            origin.get("region"),
            origin.get("mining_type"),
            custodian,
            e.id,
            at,
            _utc(e.time),
            at,
        )
        s, j = self._state, self.journal
        j.set(self.changes.holders, (lot_id, custodian), None)
        if lot_id in s.lots:
            return False
        j.set(s.lots, lot_id, at)
        j.set(self.changes.lots, lot_id, row)
        if origin_kind == "mine":
            if not isinstance(row[5], str):
                raise TypeError("an origin lot without its mine")
            lot = MineLot(lot_id, e.id, _i(row[5]), _oi(row[6]), _oi(row[7]), _oi(row[8]), at, row[12])
            j.set(s.mine_lots, lot_id, lot)
            for index, key in ((s.lots_by_mine, lot.mine), (s.lots_by_country, lot.country or "")):
                if key not in index:
                    j.set(index, key, [])
                j.append(index[key], lot_id)
            pkey = (lot.mine, _i(row[1]), at.year)
            if pkey not in s.production:
                j.set(s.production, pkey, [])
            j.insort(s.production[pkey], (at, lot.recorded_at, lot_id, row[3]))
            j.set(s.produced_kg, pkey, s.produced_kg.get(pkey, Decimal(0)) + row[3])
        return True

    def on_registered(self, e: CloudEvent) -> None:
        d = e.data
        origin, mineral = d["origin"], d["mineral"]
        mine = origin["participant_id"]
        year = (_dt(d["occurred_at"]) or e.time).year
        self._new_lot(e, origin_kind="mine", origin=origin, mass_kg=d["mass_kg"], custodian=d["custodian"])
        self.screen_origin(d["lot_id"])
        s = self._state
        known = s.capacities.get(mine)
        cap = known[1].get(mineral) if known and isinstance(known[1], dict) else None
        if cap is None:
            return
        declared = _d(cap)
        key = (mine, mineral, year)
        cause = f"{mine}:{mineral}:{year}"
        if cause in s.capacity_flagged or s.produced_kg.get(key, Decimal(0)) <= declared:
            return  # flagged once already (the first flag stays), or nothing crossed the declared capacity yet
        # The lot at which the year's running total (in production order) first passes the declared capacity:
        # the same lot whatever order the lots' events were delivered in.
        running = Decimal(0)
        for _, _, lot_id, kg in s.production.get(key, ()):
            running += kg
            if running > declared:
                f = rules.capacity_exceeded(
                    mine=mine, lot_id=lot_id, mineral=mineral, year=year, declared_kg=declared, registered_kg=running
                )
                if f is not None:
                    self.journal.add(s.capacity_flagged, cause)
                    self._find([f])
                return

    def on_external(self, e: CloudEvent) -> None:
        d = e.data
        origin = d["declared_origin"]
        finding = Finding(
            rules.Rule.undocumented_custody,
            d["lot_id"],
            d["lot_id"],
            f"Material declared from outside the system by {d['custodian']} "
            f"(declared origin {origin['country']}, supplier {d['supplier']['name']})",
            {"event_id": e.id, "declared_origin": origin, "supplier": d["supplier"], "mass_kg": d["mass_kg"]},
            (d["custodian"],),
        )
        self._new_lot(e, origin_kind="external", origin=origin, mass_kg=d["mass_kg"], custodian=d["custodian"])
        self._find([finding])

    def _lot_time_check(self, e: CloudEvent, what: str) -> None:
        d = e.data
        last = self._state.lots.get(d["lot_id"])
        at = _dt(d["occurred_at"])
        if at is not None and last is not None:
            f = rules.time_contradiction(
                lot_id=d["lot_id"],
                event_id=e.id,
                what=what,
                at=at,
                after="the lot's previous custody event",
                after_at=last,
                actor=d["actor"],
            )
            if f is not None:
                self._find([f])

    def on_shipped(self, e: CloudEvent) -> None:
        d = e.data
        sid, lot_id = d["shipment_id"], d["lot_id"]
        shipped_at = _dt(d["occurred_at"])
        if shipped_at is None:
            raise ValueError("a shipment without occurred_at")
        shipped_at = _utc(shipped_at)
        countries = list(d.get("transit_countries") or [])
        max_days = d.get("max_transit_days")
        if max_days is not None and not isinstance(max_days, int):
            raise TypeError("max_transit_days must be an integer")
        if not all(isinstance(c, str) for c in countries):
            raise TypeError("transit_countries must be country codes")
        row = (
            sid,
            lot_id,
            d["from"],
            d["to"],
            _kg(d["mass_kg"]),
            d.get("seal"),
            shipped_at,
            max_days,
            countries,
            "in_transit",
            e.id,
            _utc(e.time),
        )
        self._lot_time_check(e, "Shipped")
        s, j = self._state, self.journal
        if sid in s.open_shipments or sid in s.transits:  # shipment ids are unique: a repeat changes nothing
            self.screen_transit(sid)  # judged on the shipment as first recorded, as the table keeps it
            return
        j.add(s.open_shipments, sid)
        j.set(self.changes.shipments, sid, row)
        if countries:
            t = Transit(lot_id, e.id, tuple(map(_i, countries)), shipped_at, _i(row[2]), _i(row[3]))
            j.set(s.transits, sid, t)
            for c in dict.fromkeys(countries):
                if c not in s.transits_by_country:
                    j.set(s.transits_by_country, c, [])
                j.append(s.transits_by_country[c], sid)
        self.screen_transit(sid)

    def on_received(self, e: CloudEvent) -> None:
        d = e.data
        s_ = d["shipped"]
        shipped_at = _dt(s_["shipped_at"])
        received_at = _dt(d["occurred_at"])
        if shipped_at is None or received_at is None:
            raise ValueError("a receipt without its shipment's or its own time")
        sid, lot_id, by = d["shipment_id"], d["lot_id"], d["by"]
        findings = rules.receipt_findings(
            lot_id=lot_id,
            shipment_id=sid,
            event_id=e.id,
            shipped_kg=_d(s_["mass_kg"]),
            received_kg=_d(d["mass_kg"]),
            shipped_seal=s_.get("seal"),
            received_seal=d.get("seal"),
            shipped_at=shipped_at,
            received_at=received_at,
            sender=s_["from"],
            receiver=by,
            t=self.thresholds,
        )
        late = rules.transit_overdue(
            lot_id=lot_id,
            shipment_id=sid,
            shipped_at=shipped_at,
            max_transit_days=s_.get("max_transit_days"),
            now=received_at,
            sender=s_["from"],
            receiver=by,
            t=self.thresholds,
        )
        at = _utc(received_at)
        s, j, c = self._state, self.journal, self.changes
        if sid in s.open_shipments:
            j.discard(s.open_shipments, sid)
            if sid in c.shipments:  # shipped in this batch: it is written already received
                j.set(c.shipments, sid, (*c.shipments[sid][:9], "received", *c.shipments[sid][10:]))
            else:
                j.set(c.received_shipments, sid, None)
        last = s.lots.get(lot_id)
        if last is not None:
            last = max(last, at)
            j.set(s.lots, lot_id, last)
            if lot_id in c.lots:  # registered in this batch: written with its new custodian
                j.set(c.lots, lot_id, (*c.lots[lot_id][:9], by, *c.lots[lot_id][10:13], last))
            else:
                j.set(c.lot_updates, lot_id, (by, last))
        j.set(c.holders, (lot_id, by), None)
        self._find([*findings, *([late] if late else [])])

    def on_transformed(self, e: CloudEvent) -> None:
        d = e.data
        tid, kind, by, by_kind = d["transformation_id"], d["kind"], d["by"], d["by_kind"]
        inputs, outputs = d["inputs"], d["outputs"]
        occurred_at = _dt(d["occurred_at"])
        if occurred_at is None:
            raise ValueError("a transformation without occurred_at")
        occurred_at = _utc(occurred_at)
        output_ids = [o["lot_id"] for o in outputs]
        edges = [(i["lot_id"], o, tid) for i in inputs for o in output_ids]
        if d["role"] == "input":
            self._lot_time_check(e, f"Drawn into {kind} {tid}")
        else:
            output = next(o for o in outputs if o["lot_id"] == d["lot_id"])
            self._new_lot(
                e,
                origin_kind="transformation",
                origin={"participant_id": by, "country": d.get("by_country")},
                mass_kg=output["mass_kg"],
                custodian=by,
                mineral=output["mineral"],
                form=output["form"],
            )
        s, j = self._state, self.journal
        if tid not in s.transformations:
            found = rules.yield_exceeded(
                transformation_id=tid, kind=kind, actor=by, inputs=inputs, outputs=outputs, t=self.thresholds
            )
            j.add(s.transformations, tid)
            j.set(
                self.changes.transformations,
                tid,
                (tid, kind, by, by_kind, occurred_at, output_ids, e.id, _utc(e.time)),
            )
            if by_kind in ("smelter", "refiner"):
                j.set(
                    s.smeltings, tid, Smelting(e.id, _i(by), _i(by_kind), occurred_at, tuple(output_ids), _utc(e.time))
                )
                if by not in s.smeltings_by_actor:
                    j.set(s.smeltings_by_actor, by, [])
                j.append(s.smeltings_by_actor[by], tid)
            for edge in edges:
                j.set(self.changes.genealogy, edge, None)
            self._find(found)
        if d["role"] == "output":  # all outputs exist once their events arrived; judging again is harmless
            self.screen_smelter(tid)

    def on_consumed(self, e: CloudEvent) -> None:
        self._lot_time_check(e, "Consumed")

    def on_rejected(self, e: CloudEvent) -> None:
        d = e.data
        if d["reason"] == "exceeds_remaining":
            self._find(
                [
                    rules.beyond_remaining(
                        lot_id=d.get("subject") or e.key,
                        event_id=e.id,
                        actor=d["actor"],
                        action=d["action"],
                        detail=d["detail"],
                    )
                ]
            )

    # --- screening with reference data -----------------------------------------------------------------------

    @property
    def _state(self) -> State:
        assert self.state is not None, "apply_batch loads the state first"
        return self.state

    def _areas(self, country: str | None) -> list[Area]:
        s = self._state
        return [s.areas[aid][1] for _, aid in s.areas_by_country.get(country or "", ())]

    def _certs(self, participant: str) -> list[tuple[datetime, Cert]]:
        return [
            (known_at, Cert(scheme, value, valid_from, valid_until, i))
            for i, (known_at, _, scheme, value, valid_from, valid_until) in enumerate(
                self._state.certs.get(participant, ())
            )
        ]

    @staticmethod
    def _horizons(recorded_at: datetime, certs: list[tuple[datetime, Cert]]) -> list[list[Cert]]:
        """What was known when the custody event was recorded, then after each later certification change."""
        moments = [recorded_at, *sorted({k for k, _ in certs if k > recorded_at})]
        return [[c for k, c in certs if k <= m] for m in moments]

    def screen_origin(self, lot_id: str) -> None:
        lot = self._state.mine_lots.get(lot_id)
        if lot is None:
            return
        areas = self._areas(lot.country)
        certs = self._certs(lot.mine)
        findings: dict[tuple[str, str], Finding] = {}
        for known in self._horizons(lot.recorded_at, certs):
            for f in rules.origin_findings(
                lot_id=lot_id,
                event_id=lot.event_id,
                mine=lot.mine,
                country=lot.country,
                region=lot.region,
                mining_type=lot.mining_type,
                on=lot.origin_at.date(),
                areas=areas,
                certs=known,
            ):
                findings.setdefault((f.rule, f.cause), f)
        self._find(list(findings.values()))

    def screen_transit(self, shipment_id: str) -> None:
        t = self._state.transits.get(shipment_id)
        if t is None:
            return
        areas = [a for c in t.countries for a in self._areas(c)]
        self._find(
            rules.transit_findings(
                lot_id=t.lot_id,
                shipment_id=shipment_id,
                event_id=t.event_id,
                countries=list(t.countries),
                on=t.shipped_at.date(),
                areas=areas,
                sender=t.sender,
                receiver=t.receiver,
            )
        )

    def screen_smelter(self, transformation_id: str) -> None:
        t = self._state.smeltings.get(transformation_id)
        if t is None:
            return
        certs = self._certs(t.actor)
        findings: dict[tuple[str, str], Finding] = {}
        for known in self._horizons(t.recorded_at, certs):
            for f in rules.smelter_findings(
                lot_ids=list(t.outputs),
                transformation_id=transformation_id,
                event_id=t.event_id,
                actor=t.actor,
                actor_kind=t.actor_kind,
                on=t.occurred_at.date(),
                certs=known,
            ):
                findings.setdefault((f.rule, f.cause), f)
        self._find(list(findings.values()))

    async def check_overdue(self, conn: asyncpg.Connection, now: datetime, grace_s: float = 0.0) -> None:
        """Shipments never received within their allowed transit time (run on a schedule, not by an event).

        Only shipments recorded at least `grace_s` ago: a receipt recorded right after a back-dated shipment may
        still be on its way through the broker, and must not be taken for a missing one.
        """
        rows = await conn.fetch(
            "SELECT * FROM shipments WHERE status = 'in_transit' AND shipped_at + make_interval(days => "
            "coalesce(max_transit_days, $2)) < $1 AND recorded_at < $1 - make_interval(secs => $3)",
            now,
            self.thresholds.default_transit_days,
            grace_s,
        )
        found = [
            f
            for r in rows
            if (
                f := rules.transit_overdue(
                    lot_id=r["lot_id"],
                    shipment_id=r["shipment_id"],
                    shipped_at=r["shipped_at"],
                    max_transit_days=r["max_transit_days"],
                    now=now,
                    sender=r["sender"],
                    receiver=r["receiver"],
                    t=self.thresholds,
                )
            )
            is not None
        ]
        await self.raise_flags(conn, found)


def _first_inserted(ids: Sequence[str], inserted: set[str]) -> list[int]:
    """The positions of the flags whose id was inserted, each id once (a second finding with the same cause in one
    statement was not inserted)."""
    out, seen = [], set()
    for i, fid in enumerate(ids):
        if fid in inserted and fid not in seen:
            seen.add(fid)
            out.append(i)
    return out


def _columns(rows: Sequence[tuple[Any, ...]], n: int) -> list[list[Any]]:
    """Rows to the column arrays `unnest` takes."""
    if not rows:
        return [[] for _ in range(n)]
    return [list(col) for col in zip(*rows, strict=True)]


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


HANDLERS: dict[str, Handler] = {
    "registry.participant.registered": Projection.on_participant,
    "registry.participant.updated": Projection.on_participant,
    "registry.certification.changed": Projection.on_certification,
    "registry.cahra.updated": Projection.on_cahra,
    "custody.lot.registered": Projection.on_registered,
    "custody.lot.external_declared": Projection.on_external,
    "custody.lot.shipped": Projection.on_shipped,
    "custody.lot.received": Projection.on_received,
    "custody.lot.transformed": Projection.on_transformed,
    "custody.lot.consumed": Projection.on_consumed,
    "custody.attempt.rejected": Projection.on_rejected,
}
