"""The whole path across real processes: outbox -> relay -> Kafka -> consumer, with the relay SIGKILLed half way.

Every committed event must arrive, and none may take effect twice, although the killed relay's last batch was
(very likely) published without being marked and so is published again after the restart.
"""

from __future__ import annotations

import signal
from collections import defaultdict

import asyncpg

from shared.outbox import enqueue_raw
from shared.topics import CUSTODY_EVENTS, physical
from tests.conftest import settings_env
from tests.helpers import make_event, read_topic, spawn, unique, wait_for

N_EVENTS = 20_000
N_KEYS = 50


async def scalar(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_relay_killed_half_way_loses_nothing_and_doubles_nothing(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    custody_dsn = clean_dbs["custody"].replace("+asyncpg", "")
    audit_dsn = clean_dbs["audit"].replace("+asyncpg", "")

    # 1. Committed writes, each transaction with its events (the custody service would add its rows here).
    conn = await asyncpg.connect(custody_dsn)
    try:
        for start in range(0, N_EVENTS, 500):
            async with conn.transaction():
                await enqueue_raw(
                    conn, CUSTODY_EVENTS, [make_event(f"LOT-{i % N_KEYS}", i) for i in range(start, start + 500)]
                )
    finally:
        await conn.close()

    relay_env = settings_env("custody", clean_dbs, fresh_prefix, relay_batch_size=50, relay_poll_interval_s=0.2)
    consumer_env = settings_env("audit", clean_dbs, fresh_prefix, consumer_group=unique("audit-e2e"))
    consumer = spawn("audit.consumer", consumer_env, "e2e-audit-consumer.log")
    relay = spawn("custody.relay", relay_env, "e2e-custody-relay.log")
    try:
        # 2. SIGKILL the relay once it has published part of the outbox.
        published_sql = f"SELECT {N_EVENTS} - count(*) FROM outbox"  # the relay deletes what was acknowledged

        async def some_published() -> bool:
            return await scalar(custody_dsn, published_sql) >= N_EVENTS // 10

        await wait_for(some_published, timeout_s=60, what="the relay to publish 10% of the outbox", interval_s=0.01)
        relay.send_signal(signal.SIGKILL)
        assert relay.wait(10) == -signal.SIGKILL
        at_kill = await scalar(custody_dsn, published_sql)
        assert 0 < at_kill < N_EVENTS, f"the kill must land half way, not after {at_kill} of {N_EVENTS}"

        # 3. Restart it: everything arrives at the consumer.
        relay = spawn("custody.relay", relay_env, "e2e-custody-relay.log")

        async def all_applied() -> bool:
            return await scalar(audit_dsn, "SELECT count(DISTINCT event_id) FROM received_events") == N_EVENTS

        await wait_for(all_applied, timeout_s=120, what=f"all {N_EVENTS} events applied by the audit consumer")
        await wait_for(lambda: _zero_unpublished(custody_dsn), timeout_s=30, what="outbox emptied")
    finally:
        for p in (relay, consumer):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        relay_rc, consumer_rc = relay.wait(30), consumer.wait(30)
    assert relay_rc == 0, "the relay stops cleanly on SIGTERM"
    assert consumer_rc == 0, "the consumer stops cleanly on SIGTERM"

    # 4. Exactly one effect per event, in commit order per key.
    conn = await asyncpg.connect(audit_dsn)
    try:
        rows = await conn.fetch("SELECT key, (data->>'n')::int AS n FROM received_events ORDER BY seq")
        processed = await conn.fetchval("SELECT count(*) FROM processed_events")
    finally:
        await conn.close()
    assert len(rows) == N_EVENTS, "no event took effect twice"
    assert processed == N_EVENTS
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        per_key[r["key"]].append(r["n"])
    assert all(seq == sorted(seq) for seq in per_key.values())
    assert {n for seq in per_key.values() for n in seq} == set(range(N_EVENTS))

    on_topic = await read_topic(kafka_bootstrap, physical(CUSTODY_EVENTS, fresh_prefix), expect=N_EVENTS)
    print(
        f"\n  relay killed after {at_kill} of {N_EVENTS} published; messages on the topic: {len(on_topic)} "
        f"({len(on_topic) - N_EVENTS} republished after the kill, all deduplicated by the consumer)"
    )
    assert len(on_topic) >= N_EVENTS


async def _zero_unpublished(dsn: str) -> bool:
    return await scalar(dsn, "SELECT count(*) FROM outbox") == 0
