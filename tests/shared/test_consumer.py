"""The consumer helper: effects committed once per event, offsets committed after the effect."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from audit.projection import Projection
from shared.consumer import EventConsumer
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS, REGISTRY_EVENTS, physical
from tests.helpers import make_event, unique, wait_for


async def produce(bootstrap: str, topic: str, events: list[CloudEvent], raw: list[tuple[bytes, bytes]] = ()) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, e.data_json(), key=e.key.encode(), headers=e.kafka_headers())
        for key, value in raw:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def consumer_for(url: str, bootstrap: str, prefix: str, group: str, **kw: object) -> EventConsumer:
    return EventConsumer(
        dsn=url.replace("+asyncpg", ""),
        bootstrap_servers=bootstrap,
        group_id=group,
        topics=[CUSTODY_EVENTS, REGISTRY_EVENTS],
        handler=Projection().apply_batch,
        topic_prefix=prefix,
        **{"max_records": 50, **kw},  # type: ignore[arg-type]
    )


async def counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_id, count(*) AS n FROM received_events GROUP BY event_id")
        return {r["event_id"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def test_redelivered_events_take_effect_once(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    dsn = clean_dbs["audit"].replace("+asyncpg", "")
    custody = [make_event(f"LOT-{i % 5}", i) for i in range(300)]
    registry = [make_event(f"P-{i}", i, source="/registry", type="registry.test.happened") for i in range(20)]
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    # Every custody event twice (as a relay that crashed before marking its batch would send them),
    # plus one message that is not a CloudEvent at all.
    await produce(kafka_bootstrap, topic, custody + custody[:150], raw=[(b"LOT-X", b"not an event")])
    await produce(kafka_bootstrap, topic, custody[150:])
    await produce(kafka_bootstrap, physical(REGISTRY_EVENTS, fresh_prefix), registry)

    consumer = consumer_for(clean_dbs["audit"], kafka_bootstrap, fresh_prefix, unique("g"))
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: _has(dsn, 320), timeout_s=30, what="320 distinct events applied")
        await wait_for(lambda: _consumed(consumer, 620), timeout_s=30, what="all 620 messages read")
    finally:
        consumer.stop()
        await task
    n = await counts(dsn)
    assert len(n) == 320
    assert set(n.values()) == {1}
    assert consumer.applied == 320
    assert consumer.duplicates == 300


async def _has(dsn: str, n: int) -> bool:
    return len(await counts(dsn)) >= n


async def _consumed(consumer: EventConsumer, n: int) -> bool:
    return consumer.applied + consumer.duplicates >= n


async def _run_until(consumer: EventConsumer, dsn: str, n: int, what: str) -> None:
    """Run `consumer` until `n` distinct events are applied in `dsn`, then stop it."""
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: _has(dsn, n), timeout_s=30, what=what)
    finally:
        consumer.stop()
        await task


async def test_a_restarted_consumer_resumes_after_its_committed_offset(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    dsn = clean_dbs["audit"].replace("+asyncpg", "")
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    group = unique("g")
    first = [make_event("LOT-A", i) for i in range(50)]
    await produce(kafka_bootstrap, topic, first)
    c1 = consumer_for(clean_dbs["audit"], kafka_bootstrap, fresh_prefix, group)
    await _run_until(c1, dsn, 50, "first 50 applied")

    second = [make_event("LOT-A", 100 + i) for i in range(30)]
    await produce(kafka_bootstrap, topic, second)
    c2 = consumer_for(clean_dbs["audit"], kafka_bootstrap, fresh_prefix, group)
    await _run_until(c2, dsn, 80, "next 30 applied")
    assert c2.applied == 30
    assert c2.duplicates == 0  # it did not re-read the first 50: their offsets were committed
    conn = await asyncpg.connect(dsn)
    try:
        ns = [r["n"] for r in await conn.fetch("SELECT (data->>'n')::int AS n FROM received_events ORDER BY seq")]
    finally:
        await conn.close()
    assert ns == [*range(50), *range(100, 130)]


async def test_offsets_are_committed_at_most_every_interval_and_all_at_stop(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """Batches of 5 applied as fast as they come: their offsets go to Kafka at most every `commit_interval_s` (each
    commit is a write to `__consumer_offsets`); stopping commits the last ones, so a restart reads nothing again."""
    dsn = clean_dbs["audit"].replace("+asyncpg", "")
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    group = unique("g")
    await produce(kafka_bootstrap, topic, [make_event("LOT-C", i) for i in range(200)])
    c1 = consumer_for(clean_dbs["audit"], kafka_bootstrap, fresh_prefix, group, max_records=5, commit_interval_s=0.5)
    t1 = asyncio.create_task(c1.run())
    await wait_for(lambda: _has(dsn, 1), timeout_s=30, what="the first event applied")
    started = time.monotonic()
    await wait_for(lambda: _has(dsn, 200), timeout_s=30, what="200 events applied")
    elapsed = time.monotonic() - started
    c1.stop()
    await t1
    assert c1.applied == 200  # in batches of at most 5: at least 40 of them
    assert 1 <= c1.offset_commits <= elapsed / 0.5 + 3, f"{c1.offset_commits} commits in {elapsed:.2f}s"

    await produce(kafka_bootstrap, topic, [make_event("LOT-C", 1000 + i) for i in range(10)])
    c2 = consumer_for(clean_dbs["audit"], kafka_bootstrap, fresh_prefix, group)
    await _run_until(c2, dsn, 210, "the next 10 applied")
    assert (c2.applied, c2.duplicates) == (10, 0)  # the stop committed every offset the first one applied


def _records(topic: str, partition: int, events: list[CloudEvent]) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=n,
            timestamp=0,
            timestamp_type=0,
            key=e.key.encode(),
            value=e.data_json(),
            checksum=None,
            serialized_key_size=len(e.key),
            serialized_value_size=len(e.data_json()),
            headers=tuple(e.kafka_headers()),
        )
        for n, e in enumerate(events)
    ]


async def test_a_batch_gives_the_first_topics_events_first() -> None:
    """A batch holding a custody event and a reference fact known before it (a smelter's status changed, then the
    smelting) is decoded with the fact first, whatever order the partitions came in: the live consumer then judges
    the custody event with what the replay, which reads the registry topic first, judges it with. No I/O."""
    prefix = "t."
    custody = [make_event(f"LOT-{i}", i) for i in range(3)]
    registry = [make_event("P-1", 0, source="/registry", type="registry.certification.changed")]
    batches = {
        TopicPartition(physical(CUSTODY_EVENTS, prefix), 3): _records(physical(CUSTODY_EVENTS, prefix), 3, custody),
        TopicPartition(physical(REGISTRY_EVENTS, prefix), 2): _records(physical(REGISTRY_EVENTS, prefix), 2, registry),
    }

    def consumer(**kw: object) -> EventConsumer:
        return EventConsumer(
            dsn="postgresql://unused",
            bootstrap_servers="unused:9092",
            group_id="g",
            topics=[CUSTODY_EVENTS, REGISTRY_EVENTS],
            handler=Projection().apply_batch,
            topic_prefix=prefix,
            **kw,  # type: ignore[arg-type]
        )

    first = await consumer(first_topics=[REGISTRY_EVENTS])._decode(batches)
    assert [(d.topic, d.offset) for d in first] == [(REGISTRY_EVENTS, 0)] + [(CUSTODY_EVENTS, n) for n in range(3)]
    assert [d.event.id for d in first] == [registry[0].id] + [e.id for e in custody]
    as_they_came = await consumer()._decode(batches)
    assert [d.topic for d in as_they_came] == [CUSTODY_EVENTS] * 3 + [REGISTRY_EVENTS]
