"""Rows the broker can never take go to dead_letter and the relay goes on; against the real PostgreSQL and Kafka.

Before: a 1.2 MB outbox row (the producer refuses it: MessageSizeTooLargeError) made the relay abort every round on
it, so the events after it were never published and the rows before it were sent again and again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import REGISTRY

import audit.watch  # noqa: F401 - registers audit's open flags gauge
import shared.consumer
import shared.watch
import shared.web  # noqa: F401 - registers the HTTP metrics
from shared import dead_letter
from shared.events import CloudEvent
from shared.outbox import enqueue_raw
from shared.relay import (
    DEFAULT_MAX_REQUEST_SIZE,
    INVALID_TOPIC,
    REASONS,
    TOO_LARGE,
    UNENCODABLE,
    OutboxRelay,
    Unsendable,
    permanent_reason,
)
from shared.topics import CUSTODY_EVENTS, delete_topics, ensure_topics, physical
from tests.conftest import ROOT
from tests.helpers import make_event, read_topic, wait_for

BIG = 1_200_000  # bytes of padding: over the producer's 1 MB and the broker's message.max.bytes
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def big_event(key: str, n: int, size: int = BIG) -> CloudEvent:
    return CloudEvent(
        type="custody.test.happened",
        source="/custody",
        subject=key,
        key=key,
        data={"key": key, "n": n, "pad": "x" * size},
    )


def dead_lettered(reason: str = TOO_LARGE) -> float:
    return REGISTRY.get_sample_value("outbox_dead_lettered_total", {"service": "custody", "reason": reason}) or 0.0


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def commit(dsn: str, events: list[CloudEvent]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await enqueue_raw(conn, CUSTODY_EVENTS, events)
    finally:
        await conn.close()


@pytest.fixture
async def custody_dsn(clean_dbs: dict[str, str]) -> str:
    dsn = clean_dbs["custody"].replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE dead_letter RESTART IDENTITY")
    finally:
        await conn.close()
    return dsn


@pytest.fixture
async def fresh_prefix(kafka_bootstrap: str) -> AsyncIterator[str]:
    """Topics of this test alone, deleted at its end. Not `test-`: a pytest session that ends deletes every `test-`
    topic it did not see at its start, those of another session running beside it too."""
    prefix = f"deadletter-{uuid.uuid4().hex[:8]}."
    await ensure_topics(kafka_bootstrap, prefix)
    yield prefix
    await delete_topics(kafka_bootstrap, prefix)


def relay(dsn: str, bootstrap: str, prefix: str, **kw: Any) -> OutboxRelay:
    return OutboxRelay(
        dsn=dsn, bootstrap_servers=bootstrap, service="custody", topic_prefix=prefix, poll_interval_s=0.2, **kw
    )


def events_by_key(records: list[Any]) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        e = CloudEvent.from_kafka(r.headers, r.key, r.value)
        got.setdefault(e.key, []).append(e.data["n"])
    return got


@pytest.mark.parametrize(
    ("max_request_size", "refused_by"),
    [
        (DEFAULT_MAX_REQUEST_SIZE, "max_request_size"),  # the relay's own check, before sending
        (4 * 1024 * 1024, "MessageSizeTooLargeError"),  # a producer allowed more: the broker answers MESSAGE_TOO_LARGE
    ],
    ids=["producer-limit", "broker-limit"],
)
async def test_a_row_the_broker_can_never_take_is_dead_lettered_and_the_rest_flows(
    custody_dsn: str,
    fresh_prefix: str,
    kafka_bootstrap: str,
    max_request_size: int,
    refused_by: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a1, b, a2, c = make_event("A", 1), big_event("B", 1), make_event("A", 2), make_event("C", 1)
    await commit(custody_dsn, [a1, b, a2, c])
    before = dead_lettered()
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    r = relay(custody_dsn, kafka_bootstrap, fresh_prefix, max_request_size=max_request_size)
    task = asyncio.create_task(r.run())
    try:
        with caplog.at_level(logging.ERROR, logger="shared.relay"):

            async def moved() -> bool:
                return r.published == 3 and not await fetch(custody_dsn, "SELECT id FROM outbox")

            # Before, B stopped the stream: the relay retried the same round forever (A2 and C never went out).
            await wait_for(moved, timeout_s=10, what="A1, A2 and C published and B moved out of the outbox")
            await asyncio.sleep(1.0)  # a few more rounds: nothing is sent again
    finally:
        r.stop()
        await asyncio.wait_for(task, 20)

    records = await read_topic(kafka_bootstrap, topic, expect=4, timeout_s=3)
    assert len(records) == 3  # A1 was not sent again (the old relay re-sent it every round)
    assert events_by_key(records) == {"A": [1, 2], "C": [1]}  # in order per key, B left out
    [row] = await fetch(custody_dsn, "SELECT * FROM dead_letter")
    assert row["event_id"] == b.id and row["key"] == "B" and row["topic"] == CUSTODY_EVENTS
    assert row["reason"] == TOO_LARGE and refused_by in row["detail"]
    assert row["outbox_id"] == 2 and row["data"] is not None and row["failed_at"] is not None
    assert await fetch(custody_dsn, "SELECT id FROM outbox") == []
    assert dead_lettered() == before + 1
    assert REGISTRY.get_sample_value("outbox_dead_letter_rows", {"service": "custody"}) == 1
    assert r.dead_lettered == 1 and r.published == 3
    [logged] = [rec for rec in caplog.records if rec.levelno == logging.ERROR and "dead-lettered" in rec.getMessage()]
    message = logged.getMessage()
    assert b.id in message and CUSTODY_EVENTS in message and "'B'" in message and TOO_LARGE in message
    assert re.search(r"\b1,?2\d\d,?\d\d\d bytes", message)  # the record's size


async def test_records_refused_together_are_sent_alone_to_find_the_one_that_is_too_large(
    custody_dsn: str, fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """With a producer batching up to 4 MB, two 600 kB rows of a key share a batch the broker refuses as a whole;
    sent alone, each is accepted, and only the 1.2 MB row is dead-lettered."""
    await commit(
        custody_dsn,
        [big_event("X", 1, 600_000), big_event("X", 2, 600_000), big_event("Y", 1), make_event("Z", 1)],
    )

    def batching_producer(bootstrap: str, client_id: str, max_request_size: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            max_request_size=max_request_size,
            max_batch_size=4 * 1024 * 1024,
        )

    factory: Callable[..., AIOKafkaProducer] = batching_producer
    r = relay(custody_dsn, kafka_bootstrap, fresh_prefix, max_request_size=4 * 1024 * 1024, producer_factory=factory)
    task = asyncio.create_task(r.run())
    try:
        records = await read_topic(kafka_bootstrap, physical(CUSTODY_EVENTS, fresh_prefix), expect=3, timeout_s=15)

        async def done() -> bool:
            return r.dead_lettered == 1 and r.published == 3

        await wait_for(done, timeout_s=10, what="X1, X2 and Z published, Y dead-lettered")
    finally:
        r.stop()
        await asyncio.wait_for(task, 20)
    assert events_by_key(records) == {"X": [1, 2], "Z": [1]}
    assert [row["key"] for row in await fetch(custody_dsn, "SELECT key FROM dead_letter")] == ["Y"]


async def test_an_operator_lists_and_requeues_a_dead_letter(
    custody_dsn: str, fresh_prefix: str, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m shared.dead_letter custody list|requeue`: the row goes back to the outbox (a new id, the end of the
    queue); here the broker still refuses it, so it comes back to dead_letter with a new id."""
    await commit(custody_dsn, [big_event("B", 1)])
    r = relay(custody_dsn, kafka_bootstrap, fresh_prefix)
    task = asyncio.create_task(r.run())
    try:

        def dead(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return r.dead_lettered == n

            return check

        await wait_for(dead(1), timeout_s=10, what="B dead-lettered")
        assert await asyncio.to_thread(dead_letter.main, ["custody", "--database-url", custody_dsn, "list"]) == 0
        [listed] = [line for line in capsys.readouterr().out.splitlines() if line]
        assert '"id": 1' in listed and '"reason": "too_large"' in listed and '"key": "B"' in listed
        assert (
            await asyncio.to_thread(dead_letter.main, ["custody", "--database-url", custody_dsn, "requeue", "1"]) == 0
        )
        assert "re-queued dead letter 1" in capsys.readouterr().out
        await wait_for(dead(2), timeout_s=10, what="the re-queued row refused again")
        assert (
            await asyncio.to_thread(dead_letter.main, ["custody", "--database-url", custody_dsn, "requeue", "1"]) == 1
        )  # gone from there
    finally:
        r.stop()
        await asyncio.wait_for(task, 20)
    [row] = await fetch(custody_dsn, "SELECT id, outbox_id FROM dead_letter")
    assert row["id"] == 2 and row["outbox_id"] == 2  # a new outbox row, dead-lettered again


def test_the_alert_rules_name_metrics_that_exist() -> None:
    OutboxRelay(dsn="postgresql://unused", bootstrap_servers="unused:1", service="custody")  # its labelled series
    known = set(REGISTRY._names_to_collectors)  # every name /metrics can show (a counter's `_total` included)
    rules = [rule for group in yaml.safe_load(Path(ALERTS).read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {"OutboxRowDeadLettered", "OutboxRelayStalled"}
    promql_words = {"increase", "rate", "time", "unless", "on", "and", "or", "by", "without", "sum", "max", "min"}
    promql_words |= {"deriv", "delta"}
    for rule in rules:
        # what is not a metric's name: ranges, label matchers, label lists
        stripped = re.sub(r"\[[^]]*\]|\{[^}]*\}|\b(?:by|on|without|ignoring)\s*\([a-z_, ]*\)", " ", rule["expr"])
        names = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", stripped))
        metrics = names - promql_words
        assert metrics, rule
        assert metrics <= known, f"{rule['alert']} names unknown metrics: {metrics - known}"
    stalled = next(rule for rule in rules if rule["alert"] == "OutboxRelayStalled")
    assert "outbox_last_publish_timestamp_seconds" in stalled["expr"] and "outbox_pending_rows" in stalled["expr"]
    for reason in REASONS:  # from 0, so that increase() sees the first dead letter
        assert (
            REGISTRY.get_sample_value("outbox_dead_lettered_total", {"service": "custody", "reason": reason})
            is not None
        )


def test_which_failures_are_permanent_for_a_row() -> None:
    """Too large and invalid topics never pass; a broker that is down, slow or moving leaders does."""
    assert permanent_reason(MessageSizeTooLargeError()) == TOO_LARGE
    assert permanent_reason(RecordListTooLargeError()) == TOO_LARGE
    assert permanent_reason(InvalidTopicError()) == INVALID_TOPIC
    for transient in (
        KafkaConnectionError(),
        RequestTimedOutError(),
        NotLeaderForPartitionError(),
        KafkaTimeoutError(),
        UnknownTopicOrPartitionError(),
        TopicAuthorizationFailedError(),
        OutOfOrderSequenceNumber(),
        TimeoutError(),
    ):
        assert permanent_reason(transient) is None, transient


def test_a_row_that_cannot_be_a_kafka_record_is_found_before_sending() -> None:
    r = OutboxRelay(dsn="postgresql://unused", bootstrap_servers="unused:1", service="custody", topic_prefix="t.")
    e = make_event("K", 1)
    row = {
        "id": 1,
        "event_id": e.id,
        "topic": CUSTODY_EVENTS,
        "key": "K",
        "type": e.type,
        "source": e.source,
        "subject": e.subject,
        "time": e.time,
        "dataschema": None,
        "data": '{"n": 1}',
    }
    record = r._record(row)  # type: ignore[arg-type]
    assert record.topic == f"t.{CUSTODY_EVENTS}" and record.key == b"K" and 0 < record.size < 1024
    with pytest.raises(Unsendable) as unencodable:
        r._record({**row, "key": "lone \ud800 surrogate"})  # type: ignore[arg-type]
    assert unencodable.value.reason == UNENCODABLE
    with pytest.raises(Unsendable) as bad_topic:
        r._record({**row, "topic": "custody events!"})  # type: ignore[arg-type]
    assert bad_topic.value.reason == INVALID_TOPIC
    with pytest.raises(Unsendable) as too_large:
        r._record({**row, "data": '"' + "x" * DEFAULT_MAX_REQUEST_SIZE + '"'})  # type: ignore[arg-type]
    assert too_large.value.reason == TOO_LARGE and too_large.value.size is not None
    assert too_large.value.size > DEFAULT_MAX_REQUEST_SIZE
