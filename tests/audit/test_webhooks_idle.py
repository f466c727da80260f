"""The webhooks' consumer while nobody subscribes (issue 28): its batches are passed over and, after the first that
found nobody, not even decoded; a batch read before a subscription appeared and applied after is decoded then and
reaches it. Driven batch by batch on a connection of the test's own (in a transaction rolled back at the end)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from audit.config import Settings
from audit.webhooks_consumer import WebhooksConsumer, make_webhooks_consumer
from shared.consumer import Delivered
from shared.events import CloudEvent, new_event

SOURCE = "/webhooks-idle-test"


def batch(start: int, *lots: str) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Custody events on partition 0 of `custody.events`, from offset `start`."""
    records = []
    for n, lot in enumerate(lots):
        e = new_event("custody.lot.registered", source=SOURCE, key=lot, data={"lot_id": lot, "actor": "m-1"})
        value = e.data_json()
        records.append(
            ConsumerRecord(
                topic="custody.events",
                partition=0,
                offset=start + n,
                timestamp=0,
                timestamp_type=0,
                key=lot.encode(),
                value=value,
                checksum=None,
                serialized_key_size=len(lot),
                serialized_value_size=len(value),
                headers=tuple(e.kafka_headers()),
            )
        )
    return {TopicPartition("custody.events", 0): records}


@pytest.mark.asyncio(loop_scope="session")
async def test_while_nobody_subscribes_batches_are_not_decoded(
    database_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[bytes | None] = []
    decode = CloudEvent.from_kafka

    def counted(headers: Any, key: bytes | None, value: bytes | None) -> CloudEvent:
        decoded.append(key)
        return decode(headers, key, value)

    monkeypatch.setattr(CloudEvent, "from_kafka", counted)
    handled: list[str] = []

    async def handler(conn: asyncpg.Connection, delivered: list[Delivered]) -> None:
        handled.extend(d.event.key for d in delivered)

    subscribed = False

    async def wanted(conn: asyncpg.Connection) -> bool:
        return subscribed

    dsn = database_urls["audit"].replace("+asyncpg", "")
    consumer = WebhooksConsumer(
        dsn=dsn,
        bootstrap_servers="127.0.0.1:1",
        group_id="g-webhooks-idle",
        topics=[],
        handler=handler,
        wanted=wanted,
        max_records=2,
        idle_pace_s=0.3,
    )
    loop = asyncio.get_running_loop()
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "webhooks, public"})
    tx = conn.transaction()
    await tx.start()

    async def step(records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        await consumer.apply(conn, await consumer._decode(records))

    async def inbox() -> int:
        return int(await conn.fetchval("SELECT count(*) FROM webhooks.processed_events WHERE source = $1", SOURCE))

    try:
        # the first batch is decoded (nobody known to be missing yet), then passed over
        await step(batch(0, "A1", "A2"))
        assert (decoded, handled, consumer.passed_over, consumer.nobody) == ([b"A1", b"A2"], [], 2, True)
        # the next ones: passed over without decoding a record; a batch that came full is read on at once, one
        # smaller (a trickle) a little later
        consumer.idle_pace_s = 60
        t0 = loop.time()
        await step(batch(2, "B1", "B2"))
        assert loop.time() - t0 < 30
        consumer.idle_pace_s = 0.3
        t0 = loop.time()
        await step(batch(4, "B3"))
        assert loop.time() - t0 >= 0.3
        assert (decoded, handled, consumer.passed_over, consumer.undecoded) == ([b"A1", b"A2"], [], 5, 3)
        assert await inbox() == 0
        # read while nobody subscribed, applied once someone had: decoded then, handled, in the inbox
        read = await consumer._decode(batch(5, "C1"))
        assert decoded == [b"A1", b"A2"]
        subscribed = True
        await consumer.apply(conn, read)
        assert (decoded[2:], handled, consumer.nobody, await inbox()) == ([b"C1"], ["C1"], False, 1)
        # with someone subscribed, decoded beforehand as always
        await step(batch(6, "D1"))
        assert (decoded[3:], handled) == ([b"D1"], ["C1", "D1"])
        # nobody again: one batch decoded and found nobody, the one after not decoded
        subscribed = False
        await step(batch(7, "E1"))
        await step(batch(8, "F1"))
        assert (decoded[4:], handled, consumer.undecoded, await inbox()) == ([b"E1"], ["C1", "D1"], 4, 2)
    finally:
        await tx.rollback()
        await conn.close()


def test_the_service_runs_the_webhooks_consumer_that_skips_decoding() -> None:
    settings = Settings(database_url="postgresql+asyncpg://u:p@127.0.0.1:1/x")
    consumer = make_webhooks_consumer(settings, audit=None)  # type: ignore[arg-type]
    assert isinstance(consumer, WebhooksConsumer) and consumer.group_id.endswith("-webhooks")
