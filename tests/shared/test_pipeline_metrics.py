"""The pipeline's signals for operators (issue 28, "What operators see"): the outbox's depth and its oldest row's age,
audit's open flags by severity, the pools' use, the consumer's lag per partition, and `/readyz` covering the relay
and the consumer, on real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest

from audit import watch as audit_watch
from shared.consumer import STALL_S, Delivered, EventConsumer
from shared.events import CloudEvent
from shared.relay import READY_AFTER_FAILING_S, OutboxRelay
from shared.topics import ensure_topics, physical
from shared.watch import PipelineWatch, unwatch_pool, watch_pool
from shared.web import install_common, worker_check
from tests.audit.conftest import audit_databases
from tests.conftest import ENV, ROOT, session_prefix
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def db(infra: None) -> AsyncIterator[str]:
    async with audit_databases("metrics", n=1) as (url,):
        yield url


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_outbox_s_depth_and_oldest_age_and_the_open_flags(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, type, source, subject, time, data, created_at) "
            "SELECT gen_random_uuid()::text, 'audit.flags', 'k', 't', '/audit', NULL, now(), '{}', "
            "now() - make_interval(secs => 120 - g) FROM generate_series(1, 3) g"
        )
        for i, (severity, status) in enumerate(
            [("high", "open"), ("high", "open"), ("critical", "open"), ("low", "resolved")]
        ):
            await conn.execute(
                "INSERT INTO flags (id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, "
                "status) VALUES ($1, 'seal_mismatch', $1, $2, 'L1', '{L1}', '{P1}', 's', '{}', $3)",
                f"F-{i}",
                severity,
                status,
            )
        watch = PipelineWatch(db, "metrics-test", probes=[audit_watch.open_flags, audit_watch.webhook_deliveries])
        before = time.time()
        await watch.read()
        assert sample("outbox_rows", service="metrics-test") == 3
        age = sample("outbox_oldest_row_age_seconds", service="metrics-test")
        assert age is not None and 118 < age < 180
        assert sample("pipeline_watch_last_success_timestamp_seconds", service="metrics-test") >= before
        assert (sample("audit_open_flags", severity="high"), sample("audit_open_flags", severity="critical")) == (2, 1)
        assert sample("audit_open_flags", severity="low") == 0  # resolved: not open
        assert (sample("audit_webhook_deliveries_waiting"), sample("audit_webhook_oldest_waiting_seconds")) == (0, 0)
        await conn.execute(
            "INSERT INTO webhooks.subscriptions (id, owner, owner_kind, url, secret, filters) "
            "VALUES ('W-1', 'P1', 'mine', 'https://hooks.example.com/x', 'whsec_x', '{}')"
        )
        await conn.execute(
            "INSERT INTO webhooks.deliveries "
            "(id, subscription_id, event_id, event_type, kind, body, status, created_at) "
            "SELECT 'D-' || g || s, 'W-1', 'E-' || g || s, 'custody.lot.shipped', 'custody', '{}', s, "
            "now() - interval '90 s' FROM generate_series(1, 3) g, unnest(ARRAY['pending', 'delivered']) s"
        )
        await watch.read()
        assert sample("audit_webhook_deliveries_waiting") == 3  # the delivered ones are not waiting
        waited = sample("audit_webhook_oldest_waiting_seconds")
        assert waited is not None and 89 < waited < 150
        await conn.execute("DELETE FROM outbox")
        await watch.read()
        assert (
            sample("outbox_rows", service="metrics-test"),
            sample("outbox_oldest_row_age_seconds", service="metrics-test"),
        ) == (0, 0)
        await watch._close()
    finally:
        await conn.close()


async def test_a_pool_s_use_is_reported_at_each_scrape(db: str) -> None:
    pool = await asyncpg.create_pool(db, min_size=2, max_size=4)
    try:
        watch_pool(pool, "metrics-test", "asyncpg")
        async with pool.acquire():
            text = generate_latest().decode()
            assert 'db_pool_connections{pool="asyncpg",service="metrics-test",state="in_use"} 1.0' in text
            assert 'db_pool_connections{pool="asyncpg",service="metrics-test",state="max"} 4.0' in text
            unwatch_pool(pool)
            assert 'service="metrics-test",state="in_use"' not in generate_latest().decode()
    finally:
        await pool.close()


async def test_the_consumer_s_lag_per_partition(db: str) -> None:
    prefix = session_prefix("lag")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    topic = physical("registry.events", prefix)
    producer = AIOKafkaProducer(bootstrap_servers=ENV.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(40):
            e = CloudEvent(type="registry.nothing", source="/test", subject=None, data={"i": i}, key="k")
            await producer.send_and_wait(topic, e.data_json(), key=b"k", partition=0, headers=e.kafka_headers())
    finally:
        await producer.stop()
    applied: list[int] = []
    gate = asyncio.Event()

    async def slow(conn: asyncpg.Connection, batch: list[Delivered]) -> None:
        applied.extend(d.offset for d in batch)
        await gate.wait()  # the first batch holds: the rest stays behind

    group = f"lag-{uuid.uuid4().hex[:6]}"
    consumer = EventConsumer(
        dsn=db,
        bootstrap_servers=ENV.kafka_bootstrap,
        group_id=group,
        topics=["registry.events"],
        topic_prefix=prefix,
        handler=slow,  # type: ignore[arg-type]
        max_records=10,
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def measured() -> bool:
            return sample("consumer_lag", group=group, topic="registry.events", partition="0") is not None

        await wait_for(measured, timeout_s=30, what="the lag gauge")
        lag = sample("consumer_lag", group=group, topic="registry.events", partition="0")
        assert lag is not None and 20 <= lag <= 40  # about 10 read of 40 (the fetch position, not the commit)
        assert consumer.readiness() is None
        consumer._last_poll = time.monotonic() - STALL_S - 1  # as if it had not read for longer than that
        assert consumer.readiness() is not None and "no read from Kafka" in consumer.readiness()  # type: ignore[operator]
        gate.set()

        async def drained() -> bool:
            return sample("consumer_lag", group=group, topic="registry.events", partition="0") == 0

        await wait_for(drained, timeout_s=30, what="the lag to reach 0")
        assert consumer.readiness() is None
    finally:
        gate.set()
        consumer.stop()
        await task


async def test_readyz_names_a_relay_that_keeps_failing_and_a_stuck_consumer(db: str) -> None:
    relay = OutboxRelay(dsn=db, bootstrap_servers="127.0.0.1:1", service="metrics-test")
    consumer = EventConsumer(
        dsn=db, bootstrap_servers="127.0.0.1:1", group_id="g", topics=[], handler=lambda c, b: asyncio.sleep(0)
    )
    app = FastAPI()
    install_common(app, "metrics-test", lambda: {"relay": worker_check(relay), "consumer": worker_check(consumer)})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/readyz")).status_code == 200
        relay._failing_since = time.monotonic() - READY_AFTER_FAILING_S - 1
        consumer._failing_since = time.monotonic() - STALL_S - 1
        r = await client.get("/readyz")
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert checks["relay"].startswith("not ready: publishing has failed for")
        assert checks["consumer"].startswith("not ready: failing for")


def test_the_grafana_dashboard_shows_metrics_that_exist() -> None:
    """deploy/grafana/pipeline.json: every panel's query names metrics the services serve."""
    import json
    import re

    import audit.projection  # noqa: F401 - registers audit's projection counters
    import shared.limits  # noqa: F401 - the guards' refusals

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "pipeline.json").read_text())
    known = set(REGISTRY._names_to_collectors)
    words = {"sum", "max", "by", "rate", "histogram_quantile", "le"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        stripped = re.sub(r"\[[^]]*\]|\{[^}]*\}|\bby\s*\([a-z_, ]*\)|\b[0-9.]+\b", " ", expr)
        names = {n.removesuffix("_bucket") for n in re.findall(r"\b[a-z_][a-z0-9_]*\b", stripped)} - words
        assert names and names <= known, f"{expr}: {names - known}"
    for metric in ("outbox_oldest_row_age_seconds", "consumer_lag", "audit_open_flags", "db_pool_connections"):
        assert any(metric in e for e in exprs), metric


async def test_the_credential_lists_age_and_the_keys_published() -> None:
    from shared.auth import CredentialRefresher, TokenVerifier

    async def fetch() -> tuple[dict[str, object], set[str]]:
        return {"keys": []}, {"revoked-jti"}

    before = time.time()
    await CredentialRefresher(TokenVerifier(), fetch, 60).refresh_once()  # type: ignore[arg-type]
    loaded = sample("auth_credential_lists_loaded_timestamp_seconds")
    assert loaded is not None and loaded >= before
    assert sample("auth_signing_keys_published") == 0


async def test_a_consumer_with_nobody_to_serve_passes_batches_over(db: str) -> None:
    """`wanted` says no (the webhooks' consumer with no subscription): nothing is written, the handler is not called;
    once it says yes, batches are applied as usual."""
    handled: list[int] = []

    async def handler(conn: asyncpg.Connection, batch: list[Delivered]) -> None:
        handled.extend(d.offset for d in batch)

    wanted = False

    async def want(conn: asyncpg.Connection) -> bool:
        return wanted

    consumer = EventConsumer(
        dsn=db,
        bootstrap_servers="127.0.0.1:1",
        group_id="g-wanted",
        topics=[],
        handler=handler,
        wanted=want,  # type: ignore[arg-type]
    )
    events = [
        Delivered(CloudEvent(type="t", source="/wanted", subject=None, data={}, key="k"), "custody.events", 0, n)
        for n in range(3)
    ]
    conn = await asyncpg.connect(db)
    try:
        await consumer.apply(conn, events[:2])
        assert (handled, consumer.passed_over) == ([], 2)
        assert await conn.fetchval("SELECT count(*) FROM processed_events WHERE source = '/wanted'") == 0
        wanted = True
        await consumer.apply(conn, events[2:])
        assert handled == [2]
        assert await conn.fetchval("SELECT count(*) FROM processed_events WHERE source = '/wanted'") == 1
    finally:
        await conn.close()
