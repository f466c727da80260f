"""Consumer helper: at-least-once delivery from Kafka, exactly-once effect in PostgreSQL.

For each batch from `getmany` (every partition it returned), in one PostgreSQL transaction:
1. insert `(source, id)` of every event into `processed_events` (ON CONFLICT DO NOTHING) and keep the ones that
   were new, in offset order within each partition;
2. hand those to the service's batch handler, on the same connection;
3. commit; only then commit, for each partition, the Kafka offset of its last message + 1, explicitly
   (a bare `commit()` could commit offsets fetched but not processed, aiokafka#933).
A handler that can also `stage` a batch gets the chance to write it in one statement first (a live trickle of a few
events a batch, where round trips are most of the time): it applies the batch as if every event were new and adds
its writes to a statement that starts by inserting the events into `processed_events` without ON CONFLICT. If an
event was processed before, or PostgreSQL refuses anything else, that statement writes nothing; the handler takes
back what it staged and the batch is applied the usual way above.
A crash anywhere before 3 redelivers the batch; a crash between 3 and the offset commit redelivers events that
are already in `processed_events`, so the handler never sees them twice. When the transaction does not commit
(or its outcome is unknown), `on_abort` is called, so a handler that keeps state in memory can drop it.

With `lock_key`, the consumer holds a session-level advisory lock of that key on its own connection while it runs, and
reads nothing from Kafka before it has it. Exclusive, a second consumer with the same key waits for the lock (tried
every `lock_poll_s`, saying who holds it), without joining the consumer group, and takes over when the first one's
connection ends. Shared (`lock_shared`, audit's: its replicas are one consumer group and order their batches
themselves, `audit.projection.head`), every consumer holds it at once, and only an exclusive holder keeps them waiting:
a replay takes the lock exclusively and refuses to run while any consumer holds it. When the lock is (re)taken,
`on_abort` is called first: someone else may have written meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from shared import tracing
from shared.events import CloudEvent, EventDecodeError
from shared.kafka_security import KafkaSecurity, client_kwargs
from shared.logging import trace_id_var
from shared.sql import Statement
from shared.topics import physical

log = logging.getLogger("shared.consumer")

MARK_PROCESSED_SQL = """
INSERT INTO processed_events (source, id, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[])
ON CONFLICT DO NOTHING
RETURNING source, id
"""

INSERT_PROCESSED_SQL = """
INSERT INTO processed_events (source, id, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[])
"""

TRY_LOCK_SQL = "SELECT pg_try_advisory_lock($1)"
TRY_LOCK_SHARED_SQL = "SELECT pg_try_advisory_lock_shared($1)"
# Who holds the session-level advisory lock of a bigint key in this database: pg_locks shows the key's high and low
# 32 bits as classid and objid, with objsubid 1.
LOCK_HOLDERS_SQL = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '(no application_name)') AS application_name,
       host(a.client_addr) AS client_addr, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid::bigint = $1 AND l.objid::bigint = $2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY a.backend_start
"""

FETCH_PARTITION_BYTES = 256 * 1024
FETCH_MAX_BYTES = 4 * 1024 * 1024

CONSUMED = Counter("consumer_events_total", "Events read from Kafka", ["group", "outcome"])
LAG = Gauge(
    "consumer_lag",
    "Messages behind the partition's end, per partition this consumer reads (as of its last fetch)",
    ["group", "topic", "partition"],
)
LAST_POLL = Gauge("consumer_last_poll_timestamp_seconds", "When the consumer last read from Kafka", ["group"])
LAG_EVERY_S = 1.0  # the lag gauges are set at most this often
STALL_S = 30.0  # readiness: not ready when the loop has not read from Kafka, or kept failing, for this long
BATCH_SECONDS = Histogram(
    "consumer_batch_seconds",
    "From sending a batch's first statement to its commit (what the next batch waits for)",
    ["group"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1),
)


@dataclass(frozen=True, slots=True)
class Delivered:
    """An event with where it came from."""

    event: CloudEvent
    topic: str
    partition: int
    offset: int
    raw: bytes | None = None  # the message's value (the event data as JSON), as received


class Redo(Exception):
    """A batch applied in memory beforehand could not be written as it was (an event was processed before, or
    PostgreSQL refused a value): its transaction rolled back, nothing of it is committed. Take it back out of memory and
    apply it with `EventConsumer.apply`, which tells a repeat from a refusal."""


REFUSALS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
"""What PostgreSQL answers when values of the batch are the problem, not the connection or the server."""

BatchHandler = Callable[[asyncpg.Connection, Sequence[Delivered]], Awaitable[None]]
"""Applies new (never processed) events, in order, inside the open transaction. Must not commit."""


@dataclass(frozen=True, slots=True)
class Staged:
    """A batch a handler staged into a `Statement`: the statement's final query, and what to do once it ran."""

    final: str  # may read the handler's CTEs; its rows go to `done`
    done: Callable[[list[asyncpg.Record]], None]  # the statement took effect
    undo: Callable[[], None]  # it did not: take back what staging changed in memory


StageHandler = Callable[[Statement, Sequence[Delivered]], Staged | None]
"""Applies a batch in memory as if every event were new and adds its writes to the statement; None to decline."""


async def lock_holders(conn: asyncpg.Connection, key: int) -> list[str]:
    """The sessions holding the session-level advisory lock `key` in the connection's database, described for a
    person: application name, pid, client address and since when."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    rows = await conn.fetch(LOCK_HOLDERS_SQL, unsigned >> 32, unsigned & 0xFFFFFFFF)
    return [
        f"{r['application_name']} (pid {r['pid']}"
        + (f" from {r['client_addr']}" if r["client_addr"] else "")
        + (f", connected since {r['backend_start']:%Y-%m-%d %H:%M:%S %Z}" if r["backend_start"] else "")
        + ")"
        for r in rows
    ]


class EventConsumer:
    def __init__(
        self,
        *,
        dsn: str,
        bootstrap_servers: str,
        group_id: str | None,
        topics: Sequence[str],
        handler: BatchHandler,
        topic_prefix: str = "",
        max_records: int = 500,
        client_id: str | None = None,
        after_commit: Callable[[], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        first_topics: Sequence[str] = (),
        copy_processed: bool = False,
        stage: StageHandler | None = None,
        server_settings: Mapping[str, str] | None = None,
        commit_interval_s: float = 0.0,
        lock_key: int | None = None,
        lock_shared: bool = False,
        wanted: Callable[[asyncpg.Connection], Awaitable[bool]] | None = None,
        lock_poll_s: float = 1.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.dsn = dsn
        self.security = security  # TLS and SASL of its Kafka consumer (None: PLAINTEXT)
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = [physical(t, topic_prefix) for t in topics]
        self._logical = {physical(t, topic_prefix): t for t in topics}
        self.handler = handler
        self.max_records = max_records
        self.client_id = client_id or group_id or "replay"
        self.after_commit = after_commit
        self.on_abort = on_abort
        self._first = {physical(t, topic_prefix) for t in first_topics}
        self.copy_processed = copy_processed  # a replay into emptied tables: a repeated event is the exception
        self.stage = stage
        self.server_settings = {"application_name": self.client_id, **(server_settings or {})}
        self._stopping = asyncio.Event()
        self._offsets: dict[TopicPartition, int] = {}  # committed to PostgreSQL, not yet to Kafka
        self._committing: asyncio.Task[None] | None = None
        self.commit_interval_s = commit_interval_s
        self._last_commit = 0.0
        self._flushing = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: asyncpg.Connection | None = None
        self.applied = 0
        self.duplicates = 0
        self.staged_batches = 0  # batches written in one statement
        self.offset_commits = 0  # offset commits Kafka acknowledged
        self.lock_key = lock_key  # held on `_conn` while running (see the module's docstring)
        self.lock_shared = lock_shared
        # Whether batches are worth applying now: when it says no, a batch is passed over (its offsets committed,
        # nothing written): a consumer with nobody to serve (the webhooks' with no subscription) costs no writes
        self.wanted = wanted
        self.passed_over = 0
        self._last_poll = 0.0  # monotonic: the last getmany that answered
        self._failing_since: float | None = None  # monotonic: the first failure of the loop's current run of them
        self._lag_at = 0.0
        self._lag_labels: set[tuple[str, str, str]] = set()
        self.lock_poll_s = lock_poll_s
        self._locked = False

    @property
    def holds_lock(self) -> bool:
        """This consumer holds its `lock_key` (its connection is open and took the lock)."""
        return self._locked and self._conn is not None and not self._conn.is_closed()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `stop()`; survives broker and database outages (the batch is redelivered)."""
        backoff = 0.2
        pending: asyncio.Task[None] | None = None  # the previous batch's transaction, still with PostgreSQL
        try:
            while not self._stopping.is_set():
                try:
                    await self._ensure_started()
                    if self._consumer is None:  # stopped while waiting for the lock
                        break
                    await self._read_first_topics_first()
                    batches = await self._consumer.getmany(timeout_ms=500, max_records=self.max_records)
                    batches = {tp: records for tp, records in batches.items() if records}
                    self._polled()
                    # Reading and decoding this batch overlaps with PostgreSQL applying the previous one; batches
                    # are still applied and committed one after the other, in order.
                    delivered = await self._decode(batches, yield_every=200)
                    if pending is not None:
                        task, pending = pending, None
                        await task
                    if batches:
                        pending = asyncio.create_task(self._apply(batches, delivered))
                        await asyncio.sleep(0)  # let it send its first statement before we read on
                    backoff = 0.2
                    self._failing_since = None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - uncommitted work is redelivered after restart
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                    log.warning("consumer %s failed, restarting in %.1fs: %r", self.group_id, backoff, exc)
                    await self._cancel(pending)
                    pending = None
                    await self._reset()
                    await self._wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            if pending is not None:  # stopping: let the batch in flight commit
                task, pending = pending, None
                try:
                    await task
                except Exception as exc:  # noqa: BLE001 - not committed: redelivered after restart
                    log.warning("consumer %s: the last batch did not commit: %r", self.group_id, exc)
        finally:
            await self._cancel(pending)
            await self._reset()

    def readiness(self) -> str | None:
        """For `/readyz`: None when the consumer reads on, else what is wrong (it has kept failing, or has not read
        from Kafka, for `STALL_S`). Waiting for a replay to end is not a failure of the service."""
        now = time.monotonic()
        if self._failing_since is not None and now - self._failing_since > STALL_S:
            return f"failing for {now - self._failing_since:.0f} s (see the logs)"
        if self._consumer is not None and self._last_poll and now - self._last_poll > STALL_S:
            return f"no read from Kafka for {now - self._last_poll:.0f} s"
        return None

    def _polled(self) -> None:
        """A fetch answered: note it, and, at most every `LAG_EVERY_S`, how far behind each assigned partition is."""
        now = time.monotonic()
        self._last_poll = now
        group = self.group_id or "replay"
        LAST_POLL.labels(group).set(time.time())
        if now - self._lag_at < LAG_EVERY_S or self._consumer is None:
            return
        self._lag_at = now
        c = self._consumer
        seen: set[tuple[str, str, str]] = set()
        subscription = c._subscription.subscription
        if subscription is None:
            return
        for tp in c.assignment():
            end = c.highwater(tp)
            state = subscription.assignment.state_value(tp)  # the fetch position, without position()'s waiting
            at = state.position if state is not None and state.has_valid_position else None
            if end is None or at is None:
                continue
            labels = (group, self._logical.get(tp.topic, tp.topic), str(tp.partition))
            LAG.labels(*labels).set(max(end - at, 0))
            seen.add(labels)
        for labels in self._lag_labels - seen:  # partitions the group gave to another member
            LAG.remove(*labels)
        self._lag_labels = seen

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is None:
            return
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001 - it is being given up; its transaction rolls back
            pass

    async def _read_first_topics_first(self) -> None:
        """While a partition of `first_topics` is behind its end, the other partitions are paused: facts those
        topics carry (reference data) are applied before the events that came after them on the other topics,
        as a replay from offset 0 that reads them first does."""
        if not self._first or self._consumer is None:
            return
        c = self._consumer
        assigned = c.assignment()
        firsts = [tp for tp in assigned if tp.topic in self._first]
        others = [tp for tp in assigned if tp.topic not in self._first]
        if not firsts or not others:
            return
        behind = False
        for tp in firsts:
            end = c.last_stable_offset(tp)
            if end is None or end < 0:
                end = c.highwater(tp)
            if end is None or await c.position(tp) < end:  # unknown until the first fetch answered
                behind = True
                break
        paused = c.paused()
        if behind:
            c.pause(*[tp for tp in others if tp not in paused])
        elif paused:
            c.resume(*[tp for tp in others if tp in paused])

    async def process(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> None:
        """Apply one partition's batch and commit its offset (public so tests can drive a consumer step by step)."""
        await self.process_batches({tp: records})

    async def process_batches(self, batches: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """Apply what `getmany` returned in one transaction, then commit each partition's offset."""
        batches = {tp: records for tp, records in batches.items() if records}
        if batches:
            await self._apply(batches, await self._decode(batches))
            await self.flush_offsets()

    async def _decode(
        self, batches: Mapping[TopicPartition, Sequence[ConsumerRecord]], yield_every: int = 0
    ) -> list[Delivered]:
        """The batch's events, each once, in offset order per partition, those of `first_topics` first (a batch may
        hold a reference fact and a custody event recorded after it: the fact is applied first, as a replay that
        reads its topic first does, whatever order the partitions came in). With `yield_every`, gives the event loop
        a turn every so many messages (so a transaction in flight gets on with its next statement)."""
        group = self.group_id or "replay"
        delivered: list[Delivered] = []
        seen: set[tuple[str, str]] = set()
        n = 0
        parts: list[tuple[TopicPartition, Sequence[ConsumerRecord]]] = list(batches.items())
        if self._first:
            parts.sort(key=lambda part: part[0].topic not in self._first)  # stable: the rest as they came
        for _, records in parts:
            for rec in records:
                n += 1
                if yield_every and n % yield_every == 0:
                    await asyncio.sleep(0)
                try:
                    event = CloudEvent.from_kafka(rec.headers, rec.key, rec.value)
                except EventDecodeError as exc:
                    # A message that can never be read would block the partition forever: log it loudly, move on.
                    CONSUMED.labels(group, "undecodable").inc()
                    log.error("skipping undecodable message %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, exc)
                    continue
                if (event.source, event.id) in seen:
                    continue
                seen.add((event.source, event.id))
                topic = self._logical.get(rec.topic, rec.topic)
                delivered.append(Delivered(event, topic, rec.partition, rec.offset, rec.value))
        return delivered

    async def _apply(
        self, batches: Mapping[TopicPartition, Sequence[ConsumerRecord]], delivered: list[Delivered]
    ) -> None:
        assert self._consumer is not None and self._conn is not None
        await self.apply(self._conn, delivered)
        if self.group_id is not None:
            # The offsets go to Kafka in the background, one commit at a time and at most every `commit_interval_s`,
            # while the next batches are applied: a commit is a broker round trip (~5-10 ms here) that used to hold up
            # every batch, and a write to `__consumer_offsets` for the broker. Should the process die first, those
            # events come again and `processed_events` skips them.
            self._offsets.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
            if self._committing is None or self._committing.done():
                self._committing = asyncio.create_task(self._commit_offsets(self._consumer))

    async def apply(self, conn: asyncpg.Connection, delivered: list[Delivered]) -> None:
        """A batch's effect in PostgreSQL, each event's once: in one statement if the handler stages it, else in a
        transaction. `on_abort` when it did not commit (or may not have), `after_commit` when it did. Kafka plays no
        part here (the caller commits offsets), so tests drive it on a connection of their own."""
        t0 = time.perf_counter()
        if delivered and self.wanted is not None and not await self.wanted(conn):
            self.passed_over += len(delivered)
            CONSUMED.labels(self.group_id or "replay", "passed_over").inc(len(delivered))
            return
        delivered, spans = tracing.consume_spans(self.group_id or "replay", delivered)
        logged = trace_id_var.set(tracing.batch_trace_id(delivered))  # the logs' trace id, if the batch has one
        try:
            if not (delivered and await self._apply_in_one_statement(conn, delivered)):
                async with conn.transaction():
                    if delivered:
                        fresh = await self._mark_processed(conn, delivered)
                        if fresh:
                            await self.handler(conn, fresh)
                        self._count(len(fresh), len(delivered) - len(fresh))
        except BaseException as exc:
            tracing.end_spans(spans, exc)
            if self.on_abort is not None:
                self.on_abort()  # not committed, or not known to be: whatever the handler kept in memory is void
            raise
        finally:
            trace_id_var.reset(logged)
        self._committed(t0)
        tracing.end_spans(spans)

    def _count(self, applied: int, duplicates: int = 0) -> None:
        group = self.group_id or "replay"
        self.applied += applied
        self.duplicates += duplicates
        CONSUMED.labels(group, "applied").inc(applied)
        CONSUMED.labels(group, "duplicate").inc(duplicates)

    def _committed(self, started: float) -> None:
        """A batch's effect is committed: its time, then tell whoever watches (never before)."""
        BATCH_SECONDS.labels(self.group_id or "replay").observe(time.perf_counter() - started)
        if self.after_commit is not None:
            self.after_commit()

    async def apply_prepared(
        self,
        conn: asyncpg.Connection,
        delivered: Sequence[Delivered],
        write: Callable[[asyncpg.Connection], Awaitable[None]],
    ) -> None:
        """A batch the handler already applied in memory, assuming every event new (a replay into emptied tables, where
        a repeat is the exception): one transaction, the events into `processed_events` by COPY, then `write`. Raises
        `Redo` when an event was processed before or PostgreSQL refused a value; nothing is committed then."""
        t0 = time.perf_counter()
        try:
            async with conn.transaction():
                await _copy_processed(conn, delivered)
                await write(conn)
        except REFUSALS as exc:
            raise Redo(f"batch of {len(delivered)}: {exc!r}") from exc
        self._count(len(delivered))
        self._committed(t0)

    async def _apply_in_one_statement(self, conn: asyncpg.Connection, delivered: list[Delivered]) -> bool:
        """The batch as one statement, if the handler stages it: True when it took effect, False when nothing was
        written (the handler declined, an event was processed before, or PostgreSQL refused the statement)."""
        if self.stage is None:
            return False
        st = Statement()
        st.add("processed", INSERT_PROCESSED_SQL, _processed_columns(delivered))
        staged = self.stage(st, delivered)
        if staged is None:
            return False
        try:
            rows = await conn.fetch(st.sql(staged.final), *st.args)
        except asyncpg.PostgresError as exc:  # nothing was written: the usual way tells a repeat from a refusal
            staged.undo()
            log.debug("consumer %s: batch of %d not written in one statement: %r", self.group_id, len(delivered), exc)
            return False
        staged.done(list(rows))
        self.staged_batches += 1
        self._count(len(delivered))
        return True

    async def _commit_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what was applied, at most every `commit_interval_s` (a flush does not wait), until nothing is left."""
        while self._offsets:
            wait = self._last_commit + self.commit_interval_s - time.monotonic()
            if wait > 0 and not self._flushing.is_set():
                try:
                    await asyncio.wait_for(self._flushing.wait(), wait)
                except TimeoutError:
                    pass
            offsets, self._offsets = self._offsets, {}
            self._last_commit = time.monotonic()
            try:
                await consumer.commit(offsets)
                self.offset_commits += 1
            except Exception as exc:  # noqa: BLE001 - a rebalance or an outage: the events come again, deduped
                log.warning("consumer %s could not commit offsets: %r", self.group_id, exc)
                return

    async def flush_offsets(self) -> None:
        """Wait until the offsets of every applied batch are committed to Kafka (or given up)."""
        self._flushing.set()
        try:
            while self._committing is not None and not self._committing.done():
                await asyncio.shield(self._committing)
            if self._offsets and self._consumer is not None:
                await self._commit_offsets(self._consumer)
        finally:
            self._flushing.clear()

    async def _mark_processed(self, conn: asyncpg.Connection, delivered: list[Delivered]) -> list[Delivered]:
        """Record the events as processed; returns those that were not already (in order)."""
        if self.copy_processed:  # COPY (half the cost) in a savepoint; a repeat makes it fail, then the usual way
            try:
                async with conn.transaction():
                    await _copy_processed(conn, delivered)
                return delivered
            except asyncpg.UniqueViolationError:
                pass
        inserted = await conn.fetch(MARK_PROCESSED_SQL, *_processed_columns(delivered))
        new = {(r["source"], r["id"]) for r in inserted}
        return [d for d in delivered if (d.event.source, d.event.id) in new]

    async def _ensure_started(self) -> None:
        if self._conn is None or self._conn.is_closed():
            self._locked = False
            conn = await asyncpg.connect(self.dsn, server_settings=self.server_settings)
            try:
                if self.lock_key is not None and not await self._take_lock(conn):
                    await conn.close()  # stopping while waiting for the lock: nothing was read
                    return
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        if self._consumer is None:
            grouped = self.group_id is not None
            consumer = AIOKafkaConsumer(
                *(self.topics if grouped else ()),
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                client_id=self.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                # What is fetched ahead waits in memory: a few batches' worth is enough to keep up (the defaults,
                # 1 MiB a partition and 50 MiB a fetch, held ~20 MB more in a backlog for no gain).
                max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
                fetch_max_bytes=FETCH_MAX_BYTES,
                **client_kwargs(self.security),
            )
            try:
                await consumer.start()
                if not grouped:  # a replay: every partition, from the beginning, no group offsets
                    parts = [
                        TopicPartition(t, p)
                        for t in self.topics
                        for p in sorted(consumer.partitions_for_topic(t) or await self._partitions(consumer, t))
                    ]
                    consumer.assign(parts)
                    await consumer.seek_to_beginning(*parts)
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer

    async def _take_lock(self, conn: asyncpg.Connection) -> bool:
        """Wait for `lock_key` on `conn` (trying every `lock_poll_s`); False if stopped first. Before Kafka is
        touched: a consumer waiting for the lock is no member of the group, so it holds no partition back."""
        assert self.lock_key is not None
        waited = False
        take = TRY_LOCK_SHARED_SQL if self.lock_shared else TRY_LOCK_SQL
        while not await conn.fetchval(take, self.lock_key):
            if not waited:
                waited = True
                holders = ", ".join(await lock_holders(conn, self.lock_key)) or "another session"
                log.warning(
                    "consumer %s waits: the projection's writer lock is held by %s; %s when it ends",
                    self.group_id,
                    holders,
                    "starting" if self.lock_shared else "taking over",
                )
            await self._wait(self.lock_poll_s)
            if self._stopping.is_set():
                return False
        if waited:
            log.info("consumer %s took the projection's writer lock", self.group_id)
        self._locked = True
        if self.on_abort is not None:
            self.on_abort()  # whatever was kept in memory may be stale: another writer could have written meanwhile
        return True

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"topic {topic} does not exist; run `python -m shared.topics`")
        return parts

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _reset(self) -> None:
        try:
            await asyncio.wait_for(self.flush_offsets(), 10)
        except Exception as exc:  # noqa: BLE001 - uncommitted offsets mean redelivery, which is deduped
            log.debug("offsets not committed at reset: %r", exc)
        self._offsets.clear()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                await asyncio.wait_for(consumer.stop(), 10)
            except Exception as exc:  # noqa: BLE001
                log.debug("consumer stop failed: %r", exc)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._locked = False  # ends with the connection
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001
                conn.terminate()


PROCESSED_COLUMNS = ("source", "id", "topic", "partition", "offset")


async def _copy_processed(conn: asyncpg.Connection, delivered: Sequence[Delivered]) -> None:
    """The events into `processed_events` by COPY (half the cost of an INSERT; a repeat fails it whole)."""
    await conn.copy_records_to_table("processed_events", records=_processed_rows(delivered), columns=PROCESSED_COLUMNS)


def _processed_rows(delivered: Sequence[Delivered]) -> list[tuple[str, str, str, int, int]]:
    """`processed_events` rows of these events, for COPY."""
    return [(d.event.source, d.event.id, d.topic, d.partition, d.offset) for d in delivered]


def _processed_columns(delivered: Sequence[Delivered]) -> list[list[Any]]:
    """The same as the column arrays of MARK_PROCESSED_SQL's and INSERT_PROCESSED_SQL's `unnest`."""
    return [list(col) for col in zip(*_processed_rows(delivered), strict=True)] if delivered else [[] for _ in range(5)]


class Worker(Protocol):
    async def run(self) -> None: ...
    def stop(self) -> None: ...


def run_standalone(
    consumer: EventConsumer,
    *,
    name: str,
    log_level: str,
    gc_young_threshold: int,
    ops_port: int | None = None,
    beside: Sequence[Worker] = (),
) -> None:
    """Entry point of `python -m <service>.consumer`: run until SIGTERM or SIGINT, with the workers `beside` it (audit's
    overdue check) and, on `ops_port`, `/metrics`, `/healthz` and `/readyz` (`shared.ops_server`)."""
    from shared.logging import configure_logging
    from shared.ops_server import serving
    from shared.process import settle_gc

    configure_logging(name, log_level)
    tracing.configure_tracing(name)
    settle_gc(gc_young_threshold)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            consumer.stop()
            for w in beside:
                w.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        log.info("consumer started", extra={"group": consumer.group_id, "topics": consumer.topics})
        async with serving(ops_port, name, [(f"consumer:{consumer.group_id}", consumer)]):
            others = [asyncio.create_task(w.run()) for w in beside]
            try:
                await consumer.run()
            finally:
                for w in beside:
                    w.stop()
                await asyncio.gather(*others, return_exceptions=True)
        log.info("consumer stopped", extra={"applied": consumer.applied, "duplicates": consumer.duplicates})

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown_tracing()
