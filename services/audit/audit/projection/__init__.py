"""The audit projection: what the consumer does with each new event, inside the consumer's transaction.

Every event is kept in `received_events` (the evidence trail). Registry events update participants, certifications
and the CAHRA list; custody events update lots, shipments, transformations and their lots, holders; then the rules of
`audit/rules.py` run and each finding becomes a flag, once per (rule, cause).

The rooms, by concern:
- `decode`: each event's data into a typed record, checked once (a malformed event fails there, before any effect);
- `handlers/`: one module per kind of event (registry, lots, shipments, transformations, refusals), plain functions
  on a `Context` (`context`), no I/O; `screening` judges origins, transits, smelters and capacities with the
  reference data as known at the time (see its docstring for how that stays the same on replay);
- `state`: the part of the projection the rules read, kept in memory; `journal`: the undo log every change to it
  (and to the batch's pending rows) goes through;
- `statements`: the SQL it writes and reads; `flags`: findings into flag rows and their `audit.flag.raised` events;
- this module: the façade the consumer, the replay and the scheduled overdue check call.

How a batch is applied (the same code for the live consumer and `python -m audit.replay`):
1. each event is decoded and applied to the in-memory state (loaded from the tables once, on the first batch).
   What the handlers change is written down in `Changes` (rows to insert or update, findings), and every change to
   the state and to the pending rows goes through the `Journal` so it can be taken back;
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

The in-memory state assumes this process is the only writer of the projection tables of its database: the consumer
holds the projection's writer lock while it runs (`audit.consumer.PROJECTION_LOCK_KEY`; a second consumer waits, a
replay refuses).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter

from audit import corrections_projection, rules
from audit.projection import decode, head, statements
from audit.projection.context import Context
from audit.projection.flags import SOURCE, Cleared, Doc, FlagBatch, flag_id, rejudge_args
from audit.projection.handlers import HANDLERS
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.projection.statements import COPY_FROM_EVENTS, Changes
from audit.rules import Finding, Thresholds
from shared.consumer import REFUSALS, Delivered, Staged
from shared.events import CloudEvent, dataschema_for
from shared.outbox import enqueue_raw, outbox_columns
from shared.sql import Statement
from shared.topics import AUDIT_FLAGS

__all__ = ["Changes", "Journal", "Prepared", "Projection", "State", "flag_id"]

log = logging.getLogger("audit.projection")
MALFORMED = Counter("audit_malformed_events_total", "Events whose data the projection could not apply", ["type"])
CAUGHT_UP = Counter(
    "audit_projection_caught_up_events_total",
    "Events other audit replicas committed, applied to this replica's in-memory state before its own batch",
)
RELOADS = Counter("audit_projection_loads_total", "Times this replica loaded the projection's state from the tables")

# What PostgreSQL refuses because of one event's values: that event is left out, the rest of the batch goes in.
DATA_ERRORS = REFUSALS


@dataclass(slots=True)
class Prepared:
    """A batch applied in memory and not written yet (`Projection.prepare`)."""

    batch: Sequence[Delivered]
    changes: Changes
    bad: list[tuple[CloudEvent, Exception]]  # events whose data could not be applied (kept as received only)
    mark: int  # the journal's length before it: `take_back` returns there


class Projection:
    """Applies batches of events; collects what was raised so it can be broadcast after the commit."""

    def __init__(self, thresholds: Thresholds | None = None, publish: bool = True, writer: str = "audit") -> None:
        self.thresholds = thresholds or Thresholds()
        self.publish = publish  # a replay rebuilds flags without publishing them again
        self.writer = writer  # who moved the projection's head on, as `projection_head.writer` says
        self.head: head.Head | None = None  # where the in-memory state is (`projection.head`), once loaded
        self.caught_up = 0  # events other replicas committed, applied here to catch up
        # No other replica wrote since this one's last batch: the one-statement path is worth trying (with others
        # writing, it would mostly find the head moved, and the batch would be applied twice)
        self.alone = True
        self.staged_undone = 0  # one-statement batches that wrote nothing (the head had moved, an event was repeated)
        self.catch_up_max = head.CATCH_UP_MAX
        self.raised: list[Doc] = []
        self.seen: list[CloudEvent] = []
        self.malformed = 0
        self.load_seconds = 0.0
        self.journal = Journal()
        self.ctx = Context(State(), self.thresholds, self.journal)
        self._loaded = False

    # --- the in-memory state ----------------------------------------------------------------------------------

    @property
    def state(self) -> State | None:
        """What the rules read, or None until it is loaded from the tables (`load`)."""
        return self.ctx.state if self._loaded else None

    @state.setter
    def state(self, state: State | None) -> None:
        self.ctx.state = state if state is not None else State()
        self._loaded = state is not None

    @property
    def changes(self) -> Changes:
        return self.ctx.changes

    @changes.setter
    def changes(self, changes: Changes) -> None:
        self.ctx.changes = changes

    async def load(self, conn: asyncpg.Connection) -> None:
        """The state from the tables, unless it is loaded already."""
        if not self._loaded:
            t0 = time.perf_counter()
            self.state = await statements.load_state(conn, self.ctx.thresholds)
            self.load_seconds += time.perf_counter() - t0
            RELOADS.inc()

    async def sync(self, conn: asyncpg.Connection) -> None:
        """Take the projection's head (its row lock, held to the end of the caller's transaction: another replica's
        batch waits for it) and bring the in-memory state up to it: loaded from the tables the first time, else brought
        up to date with the events other replicas committed since this one's last batch (`projection.head`)."""
        now = head.Head.of(await conn.fetchrow(head.HEAD_SQL))
        if self._loaded and self.head is not None and self.head.version == now.version:
            self.alone = True
            return
        self.alone = not self._loaded
        if self._loaded and self.head is not None:
            rows = await conn.fetch(head.CATCH_UP_SQL, self.head.seq, self.catch_up_max + 1)
            if len(rows) <= self.catch_up_max:
                for r in rows:
                    self._apply(head.delivered(r))  # its writes are written already: only the state is kept
                self.changes = Changes()
                self.journal.clear()
                self.caught_up += len(rows)
                CAUGHT_UP.inc(len(rows))
                self.head = now
                return
            log.info("%d+ events to catch up on: loading the projection's state from the tables", len(rows))
            self.discard()
        await self.load(conn)
        self.head = now

    async def advance(self, conn: asyncpg.Connection) -> None:
        """Move the head on past the batch just written (in the transaction that took it: `sync`)."""
        self.head = head.Head.of(await conn.fetchrow(head.ADVANCE_SQL, self.writer))

    def discard(self) -> None:
        """The consumer's transaction did not commit (or may not have): forget the in-memory state."""
        self.state = None
        self.head = None
        self.journal.clear()
        self.changes = Changes()

    # --- a batch's bookkeeping --------------------------------------------------------------------------------

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

    def _apply(self, d: Delivered, effects: bool = True) -> Exception | None:
        """One event into the state and the pending changes. If its data cannot be applied, its effects are taken
        back (the event itself is still kept) and the reason is returned."""
        e = d.event
        j = self.journal
        self.ctx.trace = e.traceparent
        j.append(
            self.ctx.changes.received,
            (
                e.id,
                e.source,
                e.type,
                e.subject,
                e.key,
                e.time,
                d.raw.decode() if d.raw else statements.to_json(e.data),
                d.topic,
                d.partition,
                d.offset,
            ),
        )
        found = HANDLERS.get(e.type) if effects else None
        if found is None:
            return None
        decoder, handler = found
        mark = j.mark()
        try:
            ev = decoder(e)
            if ev is not None:
                handler(self.ctx, ev)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with this event's data: keep it, skip its effect
            j.undo(mark)
            self._unjudgeable(e, exc)
            return exc
        return None

    def _unjudgeable(self, e: CloudEvent, exc: Exception) -> None:
        """A custody event whose data could not be applied is not judged at all: a flag says so, naming its actor
        and the field (a participant's event must not vanish from the rules unseen). Registry events are the
        operator's reference data: counted and logged as malformed only."""
        if not e.type.startswith("custody."):
            return
        d = e.data if isinstance(e.data, dict) else {}
        lot_id, actor = d.get("lot_id"), d.get("actor")
        self.ctx.find(
            [
                rules.unjudgeable(
                    lot_id=lot_id if isinstance(lot_id, str) and lot_id else e.key,
                    event_id=e.id,
                    event_type=e.type,
                    actor=actor if isinstance(actor, str) else None,
                    what=decode.unreadable(e, exc),
                    error=exc,
                )
            ]
        )

    def _malformed(self, e: CloudEvent, exc: BaseException) -> None:
        self.malformed += 1
        MALFORMED.labels(e.type).inc()
        log.error("event %s (%s) could not be applied and was kept in received_events only: %r", e.id, e.type, exc)

    # --- the consumer's batch path ----------------------------------------------------------------------------

    async def apply_batch(self, conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
        self._begin()
        try:
            await self.sync(conn)
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
            await self.advance(conn)
        except BaseException:
            self.discard()  # the transaction will not commit this batch: the state must not keep it either
            raise
        self._end(batch)

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
                    await conn.execute(head.SKIP_SQL, d.event.source, d.event.id)  # left out of a catch-up too
            except DATA_ERRORS as exc:
                log.error("event %s (%s) cannot be stored at all: %r", d.event.id, d.event.type, exc)

    async def _write(self, conn: asyncpg.Connection, copy: bool = True, changes: Changes | None = None) -> None:
        """The pending changes, one statement per table (`statements.parts`), then the flags, then the evidence of
        the flags re-judged (after: a flag raised in this batch is re-judged too)."""
        changes = changes or self.changes
        await statements.write_parts(conn, statements.parts(changes, copy))
        if changes.findings:
            await self.raise_flags(conn, list(changes.findings.values()), changes.traces)
        if changes.rejudged:
            await self.rejudge_flags(conn, list(changes.rejudged.values()))
        if changes.corrections:  # after the flags: one raised in this batch is marked too
            await corrections_projection.write(conn, self, list(changes.corrections.values()))

    def drain(self) -> tuple[list[Doc], list[CloudEvent]]:
        """What the last committed batch raised and saw (for the live stream); empties the lists."""
        out = (list(self.raised), list(self.seen))
        self.raised.clear()
        self.seen.clear()
        return out

    # --- the live path for a small batch: one statement ---------------------------------------------------------

    def stage_batch(self, st: Statement, batch: Sequence[Delivered]) -> Staged | None:
        """The live path for a small batch (`shared.consumer`): the batch applied in memory as if every event were new,
        and its writes added to `st`, the flags and their audit.flag.raised events included, so that the consumer
        writes it all in one statement. Declined (None) for a batch big enough for COPY, or before the state is
        loaded. `undo` takes the batch back out of memory when the statement wrote nothing."""
        if not self._loaded or self.head is None or not self.alone or len(batch) >= COPY_FROM_EVENTS:
            return None
        if corrections_projection.has_corrections([d.event for d in batch]):
            return None  # a correction's writes read the flags the batch wrote: the batch path (`_write`)
        self._begin()
        bad = [(d.event, exc) for d in batch if (exc := self._apply(d)) is not None]
        for _, name, sql, args in statements.parts(self.changes, copy=False):
            st.add(f"w_{name}", sql, args)
        flags: FlagBatch | None = None
        candidates: list[Doc] = []
        final = "SELECT NULL::text AS id, version, seq FROM head"
        if self.changes.findings:
            flags = FlagBatch.of(list(self.changes.findings.values()), self.changes.traces)
            candidates = flags.docs()
            st.add("new_flags", statements.INSERT_FLAGS_SQL, flags.args)
            if self.publish:
                events = flags.events(candidates)
                st.add(
                    "new_flag_events",
                    statements.INSERT_FLAG_EVENTS_SQL,
                    [*outbox_columns(AUDIT_FLAGS, events), flags.ids],
                )
            final = (
                "SELECT id, NULL::bigint AS version, NULL::bigint AS seq FROM new_flags"
                " UNION ALL SELECT NULL, version, seq FROM head"
            )
        if self.changes.rejudged:  # reference data re-judged flags that exist (one the batch inserts needs nothing)
            args = rejudge_args(list(self.changes.rejudged.values()))
            statements.rejudge_parts(st, args, datetime.now(UTC), self._updated_events())
        # last: the head moves on from the version this batch was applied on, or the statement writes nothing
        st.add("head", head.STAGED_ADVANCE_SQL, [self.head.version, self.writer])

        def done(rows: list[asyncpg.Record]) -> None:
            for r in rows:
                if r["version"] is not None:
                    self.head = head.Head(r["version"], r["seq"])
            if flags is not None:
                self.raised.extend(flags.inserted({r["id"] for r in rows if r["id"] is not None}))
            for e, err in bad:
                self._malformed(e, err)
            self._end(batch)

        def undo() -> None:
            self._undo_to(0)
            self.staged_undone += 1
            self.alone = False  # the head may have moved: the usual way takes it and catches up

        return Staged(final, done, undo)

    # --- a replay's pipeline: the next batch applied in memory while PostgreSQL writes this one --------------------

    async def prepare(self, batch: Sequence[Delivered], yield_every: int = 200) -> Prepared:
        """`batch` applied in memory as if every event were new (on top of batches prepared before and not committed
        yet), giving the event loop a turn every `yield_every` events so that a transaction in flight sends its next
        statement. Its rows are written by `write_prepared`; then `committed` or, if that wrote nothing, `take_back`."""
        assert self._loaded, "the state is loaded first (apply_batch, or load)"
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

    # --- flags ------------------------------------------------------------------------------------------------

    async def raise_flags(
        self, conn: asyncpg.Connection, findings: Sequence[Finding], traces: Mapping[tuple[str, str], str] | None = None
    ) -> None:
        """Insert the flags of these findings (once per (rule, cause): the first one wins) and, for those that are
        new, put them in the outbox for `audit.flags` and in `raised` for the live stream."""
        if not findings:
            return
        flags = FlagBatch.of(findings, traces)
        new = flags.inserted(await statements.insert_flags(conn, flags.args))  # a replay: 1 finding in 5 is new
        if self.publish and new:
            await enqueue_raw(conn, AUDIT_FLAGS, flags.events(new))
        self.raised.extend(new)

    async def rejudge_flags(self, conn: asyncpg.Connection, findings: Sequence[Finding | Cleared]) -> None:
        """Re-judged findings (reference data arrived after the custody event it bears on): each flag whose evidence
        differs gets the new evidence and summary, keeps the old in `flag_evidence_history`, and an
        `audit.flag.updated` event says so. Its status (a person's decision) stays; the event says whether a person
        had decided on it. A flag the rule no longer holds for (`Cleared`) is withdrawn unless a person decided on
        it; a withdrawn one the rule holds for again is open again (`statements.rejudge_parts`)."""
        await statements.rejudge_flags(conn, rejudge_args(findings), datetime.now(UTC), self._updated_events())

    def _updated_events(self) -> tuple[str, str, str | None] | None:
        """Where a re-judgement's audit.flag.updated events go (topic, source, dataschema), or None (a replay)."""
        return (AUDIT_FLAGS, SOURCE, dataschema_for("audit.flag.updated", 1)) if self.publish else None

    async def check_overdue(self, conn: asyncpg.Connection, now: datetime, grace_s: float = 0.0) -> None:
        """Shipments never received within their allowed transit time (run on a schedule, not by an event).

        Only shipments recorded at least `grace_s` ago: a receipt recorded right after a back-dated shipment may
        still be on its way through the broker, and must not be taken for a missing one.
        """
        rows = await statements.overdue_shipments(conn, now, self.thresholds.default_transit_days, grace_s)
        found: list[Finding] = []
        for r in rows:
            try:
                f = rules.transit_overdue(
                    lot_id=r["lot_id"],
                    shipment_id=r["shipment_id"],
                    shipped_at=r["shipped_at"],
                    max_transit_days=r["max_transit_days"],
                    now=now,
                    sender=r["sender"],
                    receiver=r["receiver"],
                    t=self.thresholds,
                )
            except Exception as exc:  # noqa: BLE001 - one shipment's odd data must not stop the check for the others
                f = rules.unjudgeable(
                    lot_id=r["lot_id"],
                    event_id=r["event_id"],
                    event_type="custody.lot.shipped",
                    actor=r["sender"],
                    what="transit_overdue",
                    error=exc,
                )
            if f is not None:
                found.append(f)
        await self.raise_flags(conn, found)
