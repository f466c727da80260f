"""The broker we run supports what the outbox relies on: the idempotent producer with acks=all."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiokafka import AIOKafkaProducer

from shared.topics import CUSTODY_EVENTS, TOPICS, physical
from tests.helpers import read_topic


async def test_idempotent_producer_delivers_each_record_once_in_order(fresh_prefix: str, kafka_bootstrap: str) -> None:
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        # The broker assigned this producer an id: idempotence is really on, not silently downgraded.
        assert producer._txn_manager is not None
        assert producer._txn_manager.producer_id >= 0
        futures = [await producer.send(topic, str(i).encode(), key=f"k{i % 10}".encode()) for i in range(10_000)]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert len({(m.partition, m.offset) for m in metadata}) == 10_000
    records = await read_topic(kafka_bootstrap, topic, expect=10_000)
    values = Counter(int(r.value) for r in records)
    assert len(records) == 10_000
    assert set(values) == set(range(10_000))
    assert max(values.values()) == 1
    for key in range(10):  # per key, the order sent
        seq = [int(r.value) for r in sorted(records, key=lambda r: r.offset) if r.key == f"k{key}".encode()]
        assert seq == sorted(seq)


async def test_topics_exist_with_the_partition_counts_we_chose(topic_prefix: str, kafka_bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([physical(t, topic_prefix) for t in TOPICS])
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    assert counts == {physical(t, topic_prefix): n for t, n in TOPICS.items()}
