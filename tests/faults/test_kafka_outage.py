"""The broker SIGKILLed under a steady stream of custody writes, with registry, custody and audit as real processes.

While Kafka is down every write still succeeds (the outbox holds the events); once it is back every committed custody
event reaches audit, and takes effect there exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx

from shared.topics import ensure_topics
from tests.conftest import ENV, session_prefix, settings_env
from tests.faults.conftest import (
    CLIENTS,
    LIMITS,
    Writes,
    audit_matches_custody,
    check_kafka_matches,
    drop_topics,
    dsn,
    fetch,
    infra,
    register_party,
    scalar,
    writer,
)
from tests.helpers import spawn, stop, wait_for, wait_http_ok

REGISTRY_PORT, CUSTODY_PORT, AUDIT_PORT = 18801, 18802, 18803
MIN_WRITES = 300


async def test_kafka_killed_under_writes_loses_nothing(database_urls: dict[str, str]) -> None:
    check_kafka_matches()
    prefix = session_prefix("fka")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    registry_url, custody_url, audit_url = (f"http://127.0.0.1:{p}" for p in (REGISTRY_PORT, CUSTODY_PORT, AUDIT_PORT))
    common = {"registry_url": registry_url, "auth_refresh_s": 1.0, "relay_poll_interval_s": 0.2}
    procs = [
        spawn(
            "registry",
            settings_env("registry", database_urls, prefix, port=REGISTRY_PORT, relay_poll_interval_s=0.2),
            "faults-kafka-registry.log",
        ),
        spawn(
            "custody",
            settings_env(
                "custody", database_urls, prefix, port=CUSTODY_PORT, consumer_group=f"c-{uuid.uuid4().hex}", **common
            ),
            "faults-kafka-custody.log",
        ),
        spawn(
            "audit",
            settings_env(
                "audit", database_urls, prefix, port=AUDIT_PORT, consumer_group=f"a-{uuid.uuid4().hex}", **common
            ),
            "faults-kafka-audit.log",
        ),
    ]
    custody_dsn, audit_dsn = dsn(database_urls["custody"]), dsn(database_urls["audit"])
    kafka_killed = False
    w = Writes()
    t0 = time.monotonic()
    try:
        for url, proc in zip((registry_url, custody_url, audit_url), procs, strict=True):
            await wait_http_ok(f"{url}/readyz", proc=proc)
        async with (
            httpx.AsyncClient(base_url=registry_url, timeout=10) as reg,
            httpx.AsyncClient(base_url=custody_url, timeout=15, limits=LIMITS) as c,
        ):
            mine = await register_party(reg, custody_dsn, "mine")
            trader = await register_party(reg, custody_dsn, "trader")
            tasks = [asyncio.create_task(writer(n, c, mine, trader, w)) for n in range(CLIENTS)]

            def writes_at_least(n: int, phase: str | None = None) -> Callable[[], Awaitable[bool]]:
                async def cond() -> bool:
                    assert not w.failures, w.failures
                    return w.total(phase) >= n

                return cond

            try:
                # 1. Kafka dies a few seconds into the stream; writing goes on while it is down.
                await wait_for(writes_at_least(60), timeout_s=30, what="60 writes before the kill")
                kafka_killed = True
                await infra("kill-kafka")
                w.phase = "down"
                t_kill = time.monotonic()
                await wait_for(writes_at_least(60, "down"), timeout_s=30, what="60 writes with Kafka down")
                unpublished_at_restart = await scalar(custody_dsn, "SELECT count(*) FROM outbox")
                # 2. Kafka comes back (writes continue during its restart: still "down" for them).
                restart_s = await infra("start", "kafka")
                kafka_killed = False
                w.phase = "after"
                down_s = time.monotonic() - t_kill
                await wait_for(writes_at_least(MIN_WRITES), timeout_s=60, what=f"{MIN_WRITES} writes in all")
                await wait_for(writes_at_least(30, "after"), timeout_s=30, what="30 writes after recovery")
            finally:
                w.stop.set()
                await asyncio.gather(*tasks)
        assert not w.failures, w.failures
        writes_s = time.monotonic() - t0

        # 3. No write failed: every one was a 2xx, before, during and after the outage.
        for phase, counts in w.statuses.items():
            assert all(200 <= s < 300 for s in counts), f"{phase}: {dict(counts)}"
        assert w.total("down") >= 60
        assert unpublished_at_restart > 0, "the outbox held events while Kafka was down"

        # 4. Every committed custody event reaches audit, exactly once in effect.
        actors = [mine.id, trader.id]
        custody_ids = {
            r["event_id"]
            for r in await fetch(custody_dsn, "SELECT event_id FROM lot_events WHERE actor = ANY($1)", actors)
        }
        assert len(custody_ids) == w.total(), "one committed custody event per successful write"
        ids = list(custody_ids)

        async def audit_has_all() -> bool:
            n = await scalar(audit_dsn, "SELECT count(*) FROM processed_events WHERE id = ANY($1)", ids)
            return n >= len(ids)

        t_sync = time.monotonic()
        await wait_for(
            audit_has_all, timeout_s=90, what=f"audit to apply all {len(ids)} custody events", interval_s=0.2
        )
        sync_s = time.monotonic() - t_sync
        received = Counter(
            r["event_id"]
            for r in await fetch(audit_dsn, "SELECT event_id FROM received_events WHERE event_id = ANY($1)", ids)
        )
        processed = {r["id"] for r in await fetch(audit_dsn, "SELECT id FROM processed_events WHERE id = ANY($1)", ids)}
        assert set(received) == custody_ids, "every custody event was received"
        assert processed == custody_ids
        doubled = {k: v for k, v in received.items() if v != 1}
        assert not doubled, f"custody events applied more than once: {doubled}"
        # processed_events is keyed by (source, id): its rows counted by id cannot show a double. What a double
        # application would change: the relay sends again what the broker never acknowledged, and a shipment
        # applied a second time after its lot's receipt is dated before that receipt, a `time_contradiction` flag.
        # Every write here is in order (registered 3 days ago, shipped 2, received 1): no such flag may exist. And
        # audit's view matches custody's one for one: a lot per registration, a shipment per ship, each received.
        sent = Counter(
            r["type"] for r in await fetch(custody_dsn, "SELECT type FROM lot_events WHERE event_id = ANY($1)", ids)
        )
        lots = [
            r["lot_id"] for r in await fetch(custody_dsn, "SELECT lot_id FROM lot_events WHERE event_id = ANY($1)", ids)
        ]
        n = w.total() // 3  # each writer finishes the lot it started: register, ship, receive
        assert sorted(sent.values()) == [n, n, n], f"custody events by type: {dict(sent)}"
        await audit_matches_custody(audit_dsn, lots, n)
        for p in procs:
            assert p.poll() is None, f"{p.args!r} survived the outage"
        print(
            f"\n  {w.total()} writes in {writes_s:.1f}s ({ {p: w.total(p) for p in w.statuses} }); Kafka down "
            f"{down_s:.1f}s (restart {restart_s:.1f}s), {unpublished_at_restart} events held in the outbox; "
            f"all {len(ids)} custody events applied once by audit {sync_s:.1f}s after the writes ended"
        )
    finally:
        if kafka_killed:
            await infra("start", "kafka")
        for p in procs:
            stop(p)
        await drop_topics(prefix)
