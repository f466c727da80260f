"""`python -m audit.replay`: rebuild the audit projection and its flags from offset 0 of both topics.

    python -m audit.replay                       # into the audit database (stop the audit service first)
    python -m audit.replay --database-url URL    # into another database (migrated; compare with the live one)
    python -m audit.replay --yes                 # in a script: overwrite without asking
    python -m audit.replay --workers 0           # without worker processes (default: one, `audit.replay_workers`)

It is the projection's one writer while it runs: it takes the advisory lock the live consumer holds
(`audit.consumer.PROJECTION_LOCK_KEY`, per database) and refuses to start while someone holds it, naming who (from
pg_locks and pg_stat_activity): stop the audit service's consumer (AUDIT_CONSUMER_ENABLED=false) or `python -m
audit.consumer` on that database first. A consumer started meanwhile waits until the replay ends. Before it empties
anything it says what is there (rows per table, flags per status) and asks (y/N on a terminal); `--yes` answers for a
script, and without a terminal and without `--yes` it refuses, changing nothing.

The projection tables are emptied first, then every event is applied again with the same code as the live
consumer, without publishing flags a second time (then `audit.decisions`, for the operator's grievance triages: the
grievance tables themselves are never emptied); at the end the scheduled check for shipments overdue in transit
runs once, as the live service's would have. It reads until the end offsets seen at its start, prints
progress, and ends with the number of events and flags and the rate.

The tables' secondary indexes (not unique: nothing the replay's writes rely on) are dropped with the truncation and
built again at the end, from the models: one sort each instead of an index entry per row (a 200k-event replay spent
~1.5 s of PostgreSQL's CPU keeping them up to date, and its batches waited on it). A replay that stops half way
leaves the tables half rebuilt, as it always did: run it again; it builds the indexes at its end. Should an index not
build (a value too long for an index entry, which the live service refuses row by row), the replay starts over with
the indexes kept in place, so it ends exactly where the live service would be.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Index
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from audit import models, replay_workers, repository
from audit.config import Settings
from audit.consumer import PROJECTION_LOCK_KEY
from audit.projection import Prepared, Projection, head
from shared import cli
from shared.consumer import TRY_LOCK_SQL, Delivered, EventConsumer, Redo, lock_holders
from shared.events import CloudEvent, Envelope, EventDecodeError
from shared.kafka_security import client_kwargs, security_of
from shared.process import settle_gc
from shared.settings import asyncpg_dsn
from shared.topics import AUDIT_DECISIONS, CUSTODY_EVENTS, REGISTRY_EVENTS, physical

log = logging.getLogger("audit.replay")

REPLAY_BATCH = 2000  # events per transaction: more per round trip than live; larger batches only cost memory
# While batch N+1 is decoded and applied in memory, the event loop gets a turn every YIELD_EVERY events, so that batch
# N's transaction sends its next statement as soon as PostgreSQL finished the last one (a batch is ~10 statements).
# Every 200 events (~3 ms of work) left PostgreSQL waiting for us ~3 s of a 200k-event replay: 15,000-16,000
# events/s; every 5-25 events, 19,700-21,400.
YIELD_EVERY = 20
# Processes that read Kafka and write the evidence trail beside the projection's process (`audit.replay_workers`): one
# was 3-40% faster on our two cores on a quiet machine, the same on a busy one; two were slower.
WORKERS = 1

TABLES = (
    "processed_events",
    "received_events",
    "projection_skipped",
    "participants",
    "certifications",
    "cahra_areas",
    "risk_profiles",
    "asm_presence",
    "coexistence_agreements",
    "self_assessments",
    "lots",
    "declared_origins",
    "lot_holders",
    "shipments",
    "transformation_inputs",
    "transformation_outputs",
    "transformations",
    "products",
    "consumptions",
    "flags",
)


@dataclass
class ReplayResult:
    events: int
    flags: int
    seconds: float
    decisions: int = 0  # read from audit.decisions and re-applied

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def deferred_indexes() -> list[Index]:
    """The secondary indexes of the replayed tables, as the models declare them: every index but the primary keys
    and unique constraints, which the writes rely on (ON CONFLICT, a repeated event refused)."""
    tables = [models.Base.metadata.tables[name] for name in TABLES]
    return [ix for t in tables for ix in sorted(t.indexes, key=lambda ix: str(ix.name)) if not ix.unique]


def create_index_sql(ix: Index) -> str:
    return str(CreateIndex(ix, if_not_exists=True).compile(dialect=postgresql.dialect()))


async def build_indexes(dsn: str, indexes: Sequence[Index], connections: int = 2) -> None:
    """`indexes`, built by `connections` sessions at once (each index is one sort; the two cores are free by then)."""
    todo = list(indexes)

    async def worker() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while todo:
                await conn.execute(create_index_sql(todo.pop(0)))
        finally:
            await conn.close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:  # the other session stops too: its index is dropped with its transaction
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class ReplayRefused(Exception):
    """The replay did not start and changed nothing: the message says why and what to do."""


Confirm = Callable[[Mapping[str, int]], bool]
"""Asked before anything is overwritten, with what is there (`overwritten`): True to go on."""


async def take_projection_lock(dsn: str, settings: Settings) -> asyncpg.Connection:
    """A connection holding the projection's writer lock (closing it lets go). Refused while a live consumer (or
    another replay) holds it, with who holds it and what to do."""
    conn = await asyncpg.connect(dsn, server_settings=settings.pg_settings("audit-replay"))
    try:
        if await conn.fetchval(TRY_LOCK_SQL, PROJECTION_LOCK_KEY):
            return conn
        holders = await lock_holders(conn, PROJECTION_LOCK_KEY)
        database = await conn.fetchval("SELECT current_database()")
    except BaseException:
        conn.terminate()
        raise
    await conn.close()
    raise ReplayRefused(
        f"the audit projection in database {database!r} is being written by {', '.join(holders) or 'another session'}"
        ", which holds its writer lock. A replay there would race it. Stop the audit consumer on that database first "
        "(set AUDIT_CONSUMER_ENABLED=false on the audit service and restart it, or stop `python -m audit.consumer`), "
        "or replay into another migrated database with --database-url. Nothing was changed."
    )


async def overwritten(conn: asyncpg.Connection) -> dict[str, int]:
    """What a replay would empty: the rows of each projection table, and the flags per status ("flags: open")."""
    out = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}
    for r in await conn.fetch("SELECT status, count(*) AS n FROM flags GROUP BY status ORDER BY status"):
        out[f"flags: {r['status']}"] = int(r["n"])
    return out


async def replay(
    settings: Settings,
    *,
    dsn: str | None = None,
    progress: bool = True,
    batch: int = REPLAY_BATCH,
    defer_indexes: bool = True,
    confirm: Confirm | None = None,
    workers: int = WORKERS,
) -> ReplayResult:
    """Rebuild the projection at `dsn` (default the settings' database) holding its writer lock (`ReplayRefused` while
    a live consumer holds it). With `confirm`, a database that holds anything is emptied only if it answers True
    (else `ReplayRefused`); without, it is emptied as told (the tests, and `--yes`)."""
    dsn = dsn or settings.asyncpg_dsn
    lock = await take_projection_lock(dsn, settings)
    try:
        if confirm is not None:
            there = await overwritten(lock)
            if any(there.values()) and not confirm(there):
                raise ReplayRefused("not confirmed: nothing was changed")
        return await _rebuild(settings, dsn, progress, batch, defer_indexes, workers)
    finally:
        await lock.close()  # lets go of the lock


async def _rebuild(
    settings: Settings, dsn: str, progress: bool, batch: int, defer_indexes: bool, workers: int = 0
) -> ReplayResult:
    deferred = deferred_indexes() if defer_indexes else []
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
            for ix in deferred:
                await conn.execute(f'DROP INDEX IF EXISTS "{ix.name}"')
    finally:
        await conn.close()
    if not deferred:  # those a replay that stopped half way left missing (IF NOT EXISTS: on empty tables)
        await build_indexes(dsn, deferred_indexes())
    projection = Projection(thresholds=settings.thresholds(), publish=False)
    start = time.perf_counter()
    # Registry facts first: each carries the time it became known, so custody events are then judged with what was
    # known when they were recorded, whichever order the two topics had interleaved in live.
    events = 0
    if workers > 0:
        try:
            events = await _replay_with_workers(settings, dsn, projection, progress, batch, workers)
        except replay_workers.WorkerFailed as exc:
            if not exc.refused:
                raise
            log.warning(
                "replay: PostgreSQL refused an event's received_events row (%s): starting over without workers, "
                "where such an event is applied the careful way as the live service does",
                exc,
            )
            return await _rebuild(settings, dsn, progress, batch, defer_indexes, workers=0)
    else:
        for topic in (REGISTRY_EVENTS, CUSTODY_EVENTS):
            events += await _replay_topic(settings, dsn, topic, projection, progress, batch)
    if deferred:
        t_ix = time.perf_counter()
        try:
            await build_indexes(dsn, deferred)
        except asyncpg.ProgramLimitExceededError as exc:
            log.warning(
                "replay: an index does not build (%s): starting over with the indexes in place, which refuse such a "
                "row as the live service did",
                exc,
            )
            return await _rebuild(settings, dsn, progress, batch, defer_indexes=False, workers=workers)
        if progress:
            print(f"[replay] {len(deferred)} indexes built in {time.perf_counter() - t_ix:.1f} s", file=sys.stderr)
    seconds = time.perf_counter() - start
    # Then audit.decisions through the projection: the operator's grievance triages raise their flags on the lots by
    # now all known (live, a triage that came first flagged each lot as it arrived: the same flags). A few events,
    # outside the timed part; flag decisions there are kept as received, and re-applied by `reapply_decisions`.
    await _replay_topic(settings, dsn, AUDIT_DECISIONS, projection, progress, batch)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():  # what the live service's scheduled check would have found by now
            await projection.check_overdue(conn, datetime.now(UTC))
    finally:
        await conn.close()
    decided = await reapply_decisions(settings, dsn, progress=progress)
    conn = await asyncpg.connect(dsn)
    try:
        flags = int(await conn.fetchval("SELECT count(*) FROM flags"))
        await conn.execute(head.RESET_SQL, "audit-replay")  # a consumer started next loads the rebuilt tables
    finally:
        await conn.close()
    return ReplayResult(events=events, flags=flags, seconds=seconds, decisions=decided)


def decision_from_event(e: CloudEvent) -> dict[str, Any]:
    """A `flag_decisions` row from an `audit.decision.*` event (`audit.events.DecisionRecorded`); KeyError or
    ValueError when it is not one."""
    d = e.data
    return {
        "id": str(d["decision_id"]),
        "flag_id": str(d["flag_id"]),
        "rule": str(d["rule"]),
        "cause": str(d["cause"]),
        "kind": str(d["kind"]),
        "decided_by": str(d["decided_by"]),
        "decided_by_kind": str(d["decided_by_kind"]),
        "authority": d.get("authority") or {},
        "decided_at": datetime.fromisoformat(str(d["decided_at"])),
        "note": d.get("note"),
        "evidence": d.get("evidence") or [],
    }


async def reapply_decisions(settings: Settings, dsn: str, *, progress: bool = True) -> int:
    """Every decision on `audit.decisions`, from offset 0 to the end offsets seen now, recorded again by its id
    (`flag_decisions` is never emptied: a decision already there stays as it is), then every flag given the status
    its decisions say (its latest resolution or re-opening: who, when, the note). Returns the decisions read."""
    topic = physical(AUDIT_DECISIONS, settings.topic_prefix)
    kafka = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        client_id="audit-replay-decisions",
        **client_kwargs(security_of(settings)),
    )
    await kafka.start()
    decisions: list[dict[str, Any]] = []
    try:
        try:  # every partition, from the beginning, as the projection's topics are read
            numbers = kafka.partitions_for_topic(topic) or await EventConsumer._partitions(kafka, topic)
        except RuntimeError as exc:
            log.warning("replay: %s; no decision re-applied from it", exc)
            numbers = set()
        parts = [TopicPartition(topic, p) for p in sorted(numbers)]
        if parts:
            kafka.assign(parts)
            await kafka.seek_to_beginning(*parts)
            end = await kafka.end_offsets(parts)
            while any([await kafka.position(tp) < end[tp] for tp in parts]):
                batches = await kafka.getmany(timeout_ms=500, max_records=REPLAY_BATCH)
                for tp, records in batches.items():
                    for r in records:
                        if r.offset >= end[tp]:
                            continue
                        try:
                            event = CloudEvent.from_kafka(r.headers, r.key, r.value)
                            if event.type.startswith("audit.grievance."):
                                continue  # re-applied through the projection (its own table is never emptied)
                            decisions.append(decision_from_event(event))
                        except (EventDecodeError, KeyError, TypeError, ValueError) as exc:
                            log.warning("replay: %s offset %d is not a decision (%r); left out", tp, r.offset, exc)
    finally:
        await kafka.stop()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            new = 0
            for i in range(0, len(decisions), REPLAY_BATCH):
                new += await repository.insert_decisions(conn, decisions[i : i + REPLAY_BATCH])
            touched = await repository.restore_statuses(conn)
    finally:
        await conn.close()
    if progress:
        print(
            f"[replay] {topic}: {len(decisions)} decisions ({new} not yet recorded here); {touched} flags given the "
            "status their decisions say",
            file=sys.stderr,
        )
    return len(decisions)


async def _replay_topic(
    settings: Settings, dsn: str, topic: str, projection: Projection, progress: bool, batch: int
) -> int:
    consumer = EventConsumer(
        dsn=dsn,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        topics=[topic],
        topic_prefix=settings.topic_prefix,
        handler=projection.apply_batch,
        max_records=batch,
        client_id="audit-replay",
        server_settings=_replay_settings(settings),
        on_abort=projection.discard,
        copy_processed=True,  # the tables were emptied: an event seen twice is the exception
        security=security_of(settings),
    )
    await consumer._ensure_started()
    kafka = consumer._consumer
    assert kafka is not None
    try:
        parts = sorted(kafka.assignment(), key=lambda tp: (tp.topic, tp.partition))
        end = await kafka.end_offsets(parts)
        total = sum(end.values())
        done = {tp: 0 for tp in parts}
        last_print = 0.0

        async def behind() -> bool:
            return any([await _position(kafka, tp) < end[tp] for tp in parts if end[tp] > 0])

        # A pipeline: batch N+1 is read, decoded and applied to the projection in memory while PostgreSQL writes batch
        # N (its transaction runs as a task; decoding and `prepare` give the event loop a turn every YIELD_EVERY
        # events so that the task sends its next statement at once). Written as prepared, or, if that is refused (an
        # event processed before, a value PostgreSQL cannot store), both batches leave memory and N is applied the
        # careful way.
        conn = consumer._conn
        assert conn is not None
        await projection.load(conn)
        pending: asyncio.Task[None] | None = None
        writing: Prepared | None = None

        async def settle(later: Prepared | None) -> Prepared | None:
            """Wait for the batch being written; returns `later` still prepared, or None if it had to be taken back."""
            nonlocal pending, writing
            if pending is None or writing is None:
                return later
            task, prepared, pending, writing = pending, writing, None, None
            try:
                await task
            except Redo as exc:
                log.warning("replay: %s; applied again the careful way", exc)
                projection.take_back(prepared)  # and `later`, prepared on top of it
                await consumer.apply(conn, list(prepared.batch))
                return None
            projection.committed(prepared, later)
            return later

        def write(prepared: Prepared) -> None:
            nonlocal pending, writing
            writing = prepared
            pending = asyncio.create_task(
                consumer.apply_prepared(conn, prepared.batch, lambda c: projection.write_prepared(c, prepared))
            )

        while await behind():
            batches = await kafka.getmany(timeout_ms=500, max_records=batch)
            batches = {
                tp: kept for tp, records in batches.items() if (kept := [r for r in records if r.offset < end[tp]])
            }
            delivered = await consumer._decode(batches, yield_every=YIELD_EVERY)
            prepared = await projection.prepare(delivered, yield_every=YIELD_EVERY) if delivered else None
            prepared = await settle(prepared)
            if delivered:
                write(prepared or await projection.prepare(delivered, yield_every=YIELD_EVERY))
            for tp, records in batches.items():
                done[tp] += len(records)
            if progress and time.perf_counter() - last_print > 1:
                last_print = time.perf_counter()
                print(
                    f"[replay] {physical(topic, settings.topic_prefix)}: {sum(done.values())}/{total} events",
                    file=sys.stderr,
                )
        await settle(None)
    finally:
        await EventConsumer._cancel(pending)  # given up: its transaction rolls back
        await consumer._reset()
    return sum(done.values())


def _replay_settings(settings: Settings) -> dict[str, str]:
    # Planned at every call, not once: the tables grow from empty under a replay, and a generic plan made on its first
    # batches scanned the whole of `lots` and `shipments` for each later UPDATE (5-7 ms each, ~0.5 s of PostgreSQL's
    # time in a 200k-event replay, against 0.04 s more planning).
    return {**settings.pg_settings("audit-replay"), "plan_cache_mode": "force_custom_plan"}


async def delivered_of(
    messages: list[replay_workers.Message], topic: str, yield_every: int = YIELD_EVERY
) -> tuple[list[Delivered], list[int]]:
    """A worker's batch as the consumer delivers one (`EventConsumer._decode`: each event once, data that is not JSON
    logged and left out), and the positions left out (the worker writes no `received_events` row for them). Gives the
    event loop a turn every `yield_every` messages, for the transaction in flight."""
    delivered: list[Delivered] = []
    skip: list[int] = []
    seen: set[tuple[str, str]] = set()
    for i, (attributes, value, partition, offset) in enumerate(messages):
        if yield_every and i % yield_every == yield_every - 1:
            await asyncio.sleep(0)
        envelope = Envelope._make(attributes)
        if (envelope.source, envelope.id) in seen:
            skip.append(i)
            continue
        try:
            event = CloudEvent.from_envelope(envelope, value)
        except EventDecodeError as exc:
            log.error("skipping undecodable message %s[%d]@%d: %s", topic, partition, offset, exc)
            skip.append(i)
            continue
        seen.add((envelope.source, envelope.id))
        delivered.append(Delivered(event, topic, partition, offset, value))
    return delivered, skip


async def _replay_with_workers(
    settings: Settings, dsn: str, projection: Projection, progress: bool, batch: int, workers: int
) -> int:
    """Both topics through `workers` worker processes (`audit.replay_workers`: they read Kafka and write
    `received_events`), applied here in the same pipeline as `_replay_topic`: batch N+1 decoded and applied in memory
    while PostgreSQL writes batch N (its `processed_events` rows and the projection's, in one transaction)."""
    topics = [(physical(t, settings.topic_prefix), t) for t in (REGISTRY_EVENTS, CUSTODY_EVENTS)]
    server_settings = _replay_settings(settings)
    specs = [
        replay_workers.Spec(
            index=i,
            count=workers,
            dsn=dsn,
            server_settings={**server_settings, "application_name": "audit-replay-worker"},
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=security_of(settings),
            topics=topics,
            batch=batch,
            gc_young_threshold=settings.gc_young_threshold,
        )
        for i in range(workers)
    ]
    consumer = EventConsumer(  # its transactions only (`apply_prepared`, and `apply` the careful way): no Kafka here
        dsn=dsn,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        topics=[],
        handler=projection.apply_batch,
        max_records=batch,
        client_id="audit-replay",
        on_abort=projection.discard,
        copy_processed=True,
        security=security_of(settings),  # it never reaches Kafka; given all the same, as every consumer is
    )
    pool = await replay_workers.Workers.start(specs)
    conn = await asyncpg.connect(dsn, server_settings=server_settings)
    pending: asyncio.Task[None] | None = None
    writing: tuple[Prepared, replay_workers.Worker, list[int]] | None = None
    events = 0
    try:
        await projection.load(conn)

        async def settle(later: Prepared | None) -> Prepared | None:
            """Wait for the batch being written and tell its worker which rows to write; returns `later` still
            prepared, or None if it had to be taken back."""
            nonlocal pending, writing
            if pending is None or writing is None:
                return later
            task, (prepared, worker, skip), pending, writing = pending, writing, None, None
            try:
                await task
            except Redo as exc:
                log.warning("replay: %s; applied again the careful way", exc)
                projection.take_back(prepared)  # and `later`, prepared on top of it
                await consumer.apply(conn, list(prepared.batch))  # writes the events' received_events rows too
                worker.ack(True)
                return None
            projection.committed(prepared, later)
            worker.ack(skip)
            return later

        def write(prepared: Prepared, worker: replay_workers.Worker, skip: list[int]) -> None:
            nonlocal pending, writing
            writing = (prepared, worker, skip)
            bare = Prepared(prepared.batch, replace(prepared.changes, received=[]), prepared.bad, prepared.mark)
            pending = asyncio.create_task(
                consumer.apply_prepared(conn, prepared.batch, lambda c: projection.write_prepared(c, bare))
            )

        for number, (name, topic) in enumerate(topics):
            done, last_print = 0, 0.0
            async for worker, read, messages in pool.batches(number):
                delivered, skip = await delivered_of(messages, topic)
                prepared = await projection.prepare(delivered, yield_every=YIELD_EVERY) if delivered else None
                prepared = await settle(prepared)
                if delivered:
                    write(prepared or await projection.prepare(delivered, yield_every=YIELD_EVERY), worker, skip)
                else:
                    worker.ack(True)
                done += read
                if progress and time.perf_counter() - last_print > 1:
                    last_print = time.perf_counter()
                    print(f"[replay] {name}: {done} events ({workers} workers)", file=sys.stderr)
            await settle(None)
            events += done
            if progress:
                print(f"[replay] {name}: {done} events", file=sys.stderr)
        written = await pool.finish()
        if progress:
            print(f"[replay] the workers wrote {written} received_events rows", file=sys.stderr)
    finally:
        await EventConsumer._cancel(pending)  # given up: its transaction rolls back
        await pool.stop()
        await conn.close()
    return events


async def _position(kafka: object, tp: TopicPartition) -> int:
    return int(await kafka.position(tp))  # type: ignore[attr-defined]


def ask(there: Mapping[str, int]) -> bool:
    """On a terminal: what will be overwritten, and y/N. Without one: refused (`--yes` is the script's answer)."""
    what = ", ".join(f"{name} {n:,}" for name, n in there.items() if n)
    if not sys.stdin.isatty():
        raise ReplayRefused(
            f"the database holds rows a replay would empty ({what}) and there is no terminal to ask: pass --yes to "
            "overwrite them. Nothing was changed."
        )
    print(f"[replay] this empties and rebuilds: {what}.", file=sys.stderr)
    try:
        answer = input("Overwrite? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(
        "python -m audit.replay",
        "Rebuild the audit projection and its flags from offset 0 of registry.events and custody.events (Kafka at "
        "AUDIT_KAFKA_BOOTSTRAP_SERVERS, topics with AUDIT_TOPIC_PREFIX in front) into AUDIT_DATABASE_URL, or into "
        "--database-url. The projection's tables are emptied first: it refuses to run while the audit consumer "
        "(the audit service with AUDIT_CONSUMER_ENABLED=true, or `python -m audit.consumer`) holds that database, and "
        "asks before it overwrites anything (--yes for scripts). Flags are not published a second time; at the end "
        "the check for shipments overdue in transit runs once. Reads up to the end offsets seen at its start.",
        Settings,
    )
    parser.add_argument(
        "--database-url", help="rebuild into this (migrated) database instead of AUDIT_DATABASE_URL (SQLAlchemy URL)"
    )
    parser.add_argument("--batch", type=int, default=REPLAY_BATCH, help="events per transaction (default %(default)s)")
    parser.add_argument(
        "--keep-indexes",
        action="store_true",
        help="keep the secondary indexes in place while replaying (slower) instead of building them at the end",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=WORKERS,
        help="processes that read Kafka and write the evidence trail beside the projection's (0: all in this one; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="overwrite what the database holds without asking (for scripts; without a terminal it is required)",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    settle_gc(settings.gc_young_threshold)
    dsn = asyncpg_dsn(args.database_url) if args.database_url else None
    topics = ", ".join(physical(t, settings.topic_prefix) for t in (REGISTRY_EVENTS, CUSTODY_EVENTS))
    print(f"[replay] rebuilding from {topics} at offset 0", file=sys.stderr)
    try:
        result = asyncio.run(
            replay(
                settings,
                dsn=dsn,
                batch=args.batch,
                defer_indexes=not args.keep_indexes,
                confirm=None if args.yes else ask,
                workers=max(0, args.workers),
            )
        )
    except ReplayRefused as exc:
        print(f"[replay] refused: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, replay_workers.WorkerFailed) as exc:
        print(
            f"[replay] failed: {exc!r}. Are PostgreSQL and Kafka running (`make up`)? Is the database migrated "
            "(`make migrate`)?",
            file=sys.stderr,
        )
        return 1
    print(
        f"[replay] {result.events} events -> {result.flags} flags in {result.seconds:.1f} s "
        f"({result.rate:,.0f} events/s); {result.decisions} decisions re-applied"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
