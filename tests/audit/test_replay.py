"""`audit.replay` through real Kafka and PostgreSQL, in small batches so that its pipeline (batch N+1 applied in memory
while batch N is written) runs many times: an event delivered twice and a value PostgreSQL refuses each send a
batch back to the careful way, and the replay still ends with exactly the flags and rows of the same stream applied
in one go.

The stream is the benchmark's generator (bench/audit_bench.py)."""

from __future__ import annotations

import base64
import copy
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import fields, replace
from datetime import UTC, datetime

import asyncpg
import pytest

from audit.config import Settings as AuditSettings
from audit.projection import Projection, State
from audit.replay import ReplayResult, deferred_indexes, replay
from audit.replay_workers import WorkerFailed
from bench.audit_bench import FLAG_SQL, Generator, new_producer, produce
from shared.consumer import Delivered
from shared.topics import CUSTODY_EVENTS, REGISTRY_EVENTS, delete_topics, ensure_topics, physical
from tests.audit.conftest import Events, audit_databases, with_refused_value
from tests.conftest import ENV, session_prefix

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_rp") as (a, b):
        yield a, b


async def rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def replay_through_kafka(stream: Events, url: str, batch: int, workers: int = 0) -> ReplayResult:
    """`stream` produced to topics of its own, then `audit.replay` from them into the database at `url` (with `workers`
    worker processes reading Kafka and writing `received_events`: `audit.replay_workers`)."""
    prefix = session_prefix("replay")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    producer = await new_producer(ENV.kafka_bootstrap)
    try:
        await produce(
            producer, [(physical(t, prefix), e.key.encode(), e.data_json(), e.kafka_headers()) for t, e in stream]
        )
    finally:
        await producer.stop()
    try:
        settings = AuditSettings(
            database_url=url.replace("postgresql://", "postgresql+asyncpg://"),
            topic_prefix=prefix,
            kafka_bootstrap_servers=ENV.kafka_bootstrap,
        )
        return await replay(settings, progress=False, batch=batch, workers=workers)
    finally:
        await delete_topics(ENV.kafka_bootstrap, prefix)


async def count(url: str, table: str) -> int:
    return int((await rows(url, f"SELECT count(*) AS n FROM {table}"))[0]["n"])


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
async def test_a_replay_in_small_batches_redoes_what_it_must_and_ends_the_same(
    dbs: tuple[str, str], caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    a, b = dbs
    events = Generator(seed=11, target=3000).build().events
    # A value PostgreSQL refuses (a lot id too long for an index entry), half way through the custody events.
    stream, odd = with_refused_value(events)  # a lot id too long for an index entry, half way through
    # An event delivered twice (a relay that died before deleting what it had sent), far from its first delivery.
    again = next((t, e) for t, e in stream if t == CUSTODY_EVENTS and e.type == "custody.lot.shipped")
    produced = [*stream, again]

    with caplog.at_level(logging.WARNING, logger="audit.replay"):
        result = await replay_through_kafka(produced, a, batch=150, workers=workers)
    redone = [r for r in caplog.records if "applied again the careful way" in r.getMessage()]
    one_by_one = [r for r in caplog.records if r.name == "audit.projection" and "one by one" in r.getMessage()]

    # The same stream in one go (registry facts first, as replay reads them), then the scheduled overdue check.
    ordered = [x for x in stream if x[0] == REGISTRY_EVENTS] + [x for x in stream if x[0] == CUSTODY_EVENTS]
    conn = await asyncpg.connect(b)
    try:
        await conn.execute(
            "TRUNCATE processed_events, received_events, lots, shipments, transformation_inputs, "
            "transformation_outputs, transformations, flags"
        )
        async with conn.transaction():
            reference = Projection(publish=False)
            await reference.apply_batch(conn, [Delivered(ev, t, 0, n) for n, (t, ev) in enumerate(ordered)])
            await reference.check_overdue(conn, datetime.now(UTC))  # as replay does at its end
    finally:
        await conn.close()

    # Each sent its batch the careful way (the two may fall in one batch, as Kafka's fetches happen to cut them)
    assert redone and one_by_one, "the repeated event and the refused value each sent a batch the careful way"
    assert result.events == len(produced)
    assert await count(a, "received_events") == len(stream)  # the repeat took no effect
    assert await count(a, "processed_events") == len(stream)
    # The evidence trail holds each event once, as received (the reference's partitions are all 0)
    trail = (
        "SELECT source, event_id, type, subject, key, time, data::jsonb::text, topic FROM received_events ORDER BY 1, 2"
    )
    assert [tuple(r) for r in await rows(a, trail)] == [tuple(r) for r in await rows(b, trail)]
    assert await rows(a, f"SELECT 1 FROM lots WHERE lot_id = '{odd.data['lot_id']}'") == []
    for table in (
        "lots",
        "shipments",
        "transformations",
        "transformation_inputs",
        "transformation_outputs",
        "lot_holders",
    ):
        assert await count(a, table) == await count(b, table), table
    flags_a = {(r["rule"], r["cause"]): dict(r) for r in await rows(a, FLAG_SQL)}
    flags_b = {(r["rule"], r["cause"]): dict(r) for r in await rows(b, FLAG_SQL)}
    assert len(flags_a) > 100
    assert flags_a == flags_b
    assert result.flags == len(flags_a)
    # The secondary indexes it dropped to replay are back, as the migrations made them (b was only truncated).
    assert await indexes(a) == await indexes(b)
    assert {ix.name for ix in deferred_indexes()} <= set(await indexes(a))


async def indexes(url: str) -> dict[str, str]:
    return {
        r["indexname"]: r["indexdef"]
        for r in await rows(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    }


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "1-worker"])
async def test_a_replay_whose_indexes_do_not_build_starts_over_with_them_in_place(
    dbs: tuple[str, str], caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    """An event whose subject is too long for an index entry: the live service cannot store it at all (the index on
    `received_events.subject` refuses it). Replayed without that index it would go in, and the index would not build
    at the end: the replay starts over with the indexes kept, and ends as the live service would, with every index.
    With workers, the worker's COPY of that row is refused then, and the replay starts over once more without them,
    where the event is applied the careful way."""
    a, _ = dbs
    stream = Generator(seed=13, target=1200).build().events
    at = [i for i, (t, _) in enumerate(stream) if t == CUSTODY_EVENTS][100]
    topic, e = stream[at]
    odd = replace(e, id=str(uuid.uuid4()), subject="LOT-" + base64.b64encode(os.urandom(15_000)).decode())
    stream = [*stream[:at], (topic, odd), *stream[at:]]
    with caplog.at_level(logging.WARNING, logger="audit.replay"):
        result = await replay_through_kafka(stream, a, batch=100, workers=workers)

    assert any("starting over with the indexes in place" in r.getMessage() for r in caplog.records)
    assert any("starting over without workers" in r.getMessage() for r in caplog.records) == (workers > 0)
    assert result.events == len(stream)
    assert await rows(a, f"SELECT 1 FROM received_events WHERE event_id = '{odd.id}'") == []
    assert await count(a, "received_events") == len(stream) - 1
    assert {ix.name for ix in deferred_indexes()} <= set(await indexes(a))


async def test_prepared_batches_are_taken_back_in_memory_exactly() -> None:
    """No database: after preparing two batches on top of a committed one and taking them back, the projection's
    state is what it was after the first; and that is also what applying only the first gives."""
    events = Generator(seed=12, target=600).build().events
    delivered = [Delivered(e, t, 0, n) for n, (t, e) in enumerate(events)]

    def fresh() -> Projection:
        p = Projection(publish=False)
        p.state = State()
        return p

    def snapshot(p: Projection) -> dict[str, object]:
        assert p.state is not None
        return {f.name: copy.deepcopy(getattr(p.state, f.name)) for f in fields(State)}

    p = fresh()
    first = await p.prepare(delivered[:200])
    p.committed(first)
    before = snapshot(p)
    second = await p.prepare(delivered[200:400])
    await p.prepare(delivered[400:])
    assert snapshot(p) != before
    p.take_back(second)  # and the third, prepared on top of it
    assert snapshot(p) == before
    assert p.journal.ops == []

    q = fresh()
    q.committed(await q.prepare(delivered[:200]))
    assert snapshot(q) == before


async def test_a_worker_that_fails_stops_the_replay_and_says_why(dbs: tuple[str, str]) -> None:
    """A worker that cannot read its topics (they do not exist here) ends the replay with its reason; nothing waits
    for it."""
    a, _ = dbs
    settings = AuditSettings(
        database_url=a.replace("postgresql://", "postgresql+asyncpg://"),
        topic_prefix=f"missing-{uuid.uuid4().hex[:8]}.",
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
    )
    with pytest.raises(WorkerFailed, match="does not exist") as failed:
        await replay(settings, progress=False, workers=1)
    assert not failed.value.refused
