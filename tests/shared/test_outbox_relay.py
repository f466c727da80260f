"""The transactional outbox and its relay, against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.events import CloudEvent
from shared.outbox import (
    close_notifier,
    configure_notifier,
    enqueue,
    enqueue_raw,
    outbox_committed,
    unregister_relay,
)
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import CUSTODY_EVENTS, physical
from tests.helpers import make_event, read_topic, wait_for


def relay_for(url: str, bootstrap: str, prefix: str, **kw: object) -> OutboxRelay:
    settings = ServiceSettings(
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        service_name="custody",
        relay_poll_interval_s=0.2,
    )
    relay = OutboxRelay.from_settings(settings)
    for k, v in kw.items():
        setattr(relay, k, v)
    return relay


async def published(
    relay: OutboxRelay, bootstrap: str, prefix: str, *, expect: int, timeout_s: float = 30.0
) -> list[ConsumerRecord]:
    """Run `relay` while reading what reaches custody.events (`read_topic`: up to `expect` records), then stop it."""
    task = asyncio.create_task(relay.run())
    try:
        return await read_topic(bootstrap, physical(CUSTODY_EVENTS, prefix), expect=expect, timeout_s=timeout_s)
    finally:
        relay.stop()
        await task


async def unpublished(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox"))  # sent rows are deleted
    finally:
        await conn.close()


async def test_committed_events_are_published_in_order_per_key(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    url = clean_dbs["custody"]
    settings = ServiceSettings(database_url=url)
    engine = make_engine(settings)
    sm = make_sessionmaker(engine)
    keys = [f"LOT-{i}" for i in range(7)]
    sent: dict[str, list[int]] = defaultdict(list)
    try:
        for batch in range(10):  # ten transactions of 70 events
            events = [make_event(k, batch * 10 + j) for j in range(10) for k in keys]
            async with unit_of_work(sm) as session:
                await session.execute(text("SELECT 1"))  # a business write would be here
                await enqueue(session, CUSTODY_EVENTS, events)
            for e in events:
                sent[e.key].append(e.data["n"])
    finally:
        await engine.dispose()

    relay = relay_for(url, kafka_bootstrap, fresh_prefix, batch_size=64)
    records = await published(relay, kafka_bootstrap, fresh_prefix, expect=700)
    got: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        e = CloudEvent.from_kafka(r.headers, r.key, r.value)
        got[e.key].append(e.data["n"])
        partitions[e.key].add(r.partition)
    assert len(records) == 700
    assert got == sent  # every event, once, in commit order per key
    assert all(len(p) == 1 for p in partitions.values())  # one key, one partition
    assert await unpublished(url.replace("+asyncpg", "")) == 0


async def _idle_leader(relay: OutboxRelay) -> asyncio.Task[None]:
    """Run `relay` until it leads and has found the outbox empty (it then sleeps for its poll interval)."""
    task = asyncio.create_task(relay.run())

    async def leading() -> bool:
        return relay.leading and relay._wake.is_set() is False

    await wait_for(leading, timeout_s=10, what="the relay to take the lead")
    await asyncio.sleep(0.1)  # its first (empty) round is over: it waits for a wake-up or its 60 s poll
    return task


async def _commit_event(dsn: str, key: str) -> None:
    """One outbox row committed on a connection of its own (no relay is told)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await enqueue_raw(conn, CUSTODY_EVENTS, [make_event(key, 1)])
    finally:
        await conn.close()


async def test_a_commit_wakes_the_relay_of_its_process_at_once(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """No trigger: after committing, writers call outbox_committed(), directly (asyncpg) or on the ORM's commit."""
    url = clean_dbs["custody"]
    relay = relay_for(url, kafka_bootstrap, fresh_prefix, poll_interval_s=60.0)
    task = await _idle_leader(relay)
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    engine = make_engine(ServiceSettings(database_url=url))
    try:
        await _commit_event(url.replace("+asyncpg", ""), "LOT-WAKE")
        outbox_committed()
        assert [r.key for r in await read_topic(kafka_bootstrap, topic, expect=1, timeout_s=5)] == [b"LOT-WAKE"]

        async with unit_of_work(make_sessionmaker(engine)) as session:  # the ORM's commit wakes it by itself
            await enqueue(session, CUSTODY_EVENTS, [make_event("LOT-ORM", 2)])
        records = await read_topic(kafka_bootstrap, topic, expect=2, timeout_s=5)
        assert sorted(r.key for r in records) == [b"LOT-ORM", b"LOT-WAKE"]  # two keys: two partitions
    finally:
        await engine.dispose()
        relay.stop()
        await task


async def test_a_commit_during_a_round_starts_the_next_round_at_once(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """A round that sent less than a batch is not followed by an empty one: the relay waits for a wake-up. A commit
    made after the round's claim (its wake-up arriving while the round runs) must not wait for the poll interval."""
    dsn = clean_dbs["custody"].replace("+asyncpg", "")
    committed_during_round: list[str] = []

    class CommitsDuringItsFirstRound(OutboxRelay):
        async def publish_round(self) -> int:
            sent = await super().publish_round()
            if sent and not committed_during_round:  # after the claim and the acknowledgements, before any wait
                await _commit_event(dsn, "LOT-DURING")
                outbox_committed()
                committed_during_round.append("LOT-DURING")
            return sent

    relay = CommitsDuringItsFirstRound(
        dsn=dsn, bootstrap_servers=kafka_bootstrap, service="custody", topic_prefix=fresh_prefix, poll_interval_s=60.0
    )
    task = await _idle_leader(relay)
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    try:
        await _commit_event(dsn, "LOT-FIRST")
        outbox_committed()
        records = await read_topic(kafka_bootstrap, topic, expect=2, timeout_s=5)
        assert sorted(r.key for r in records) == [b"LOT-DURING", b"LOT-FIRST"]
        assert committed_during_round == ["LOT-DURING"]
    finally:
        relay.stop()
        await task
    assert await unpublished(dsn) == 0  # stopping deletes what the last round sent


async def test_a_commit_wakes_a_relay_in_another_process_by_notify(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """When no relay of this process leads, outbox_committed() sends NOTIFY (after the commit) to the one that does."""
    url = clean_dbs["custody"]
    dsn = url.replace("+asyncpg", "")
    relay = relay_for(url, kafka_bootstrap, fresh_prefix, poll_interval_s=60.0)
    task = await _idle_leader(relay)
    unregister_relay(relay)  # as if it ran elsewhere: only its LISTEN connection can wake it
    configure_notifier(dsn)
    try:
        await _commit_event(dsn, "LOT-NOTIFY")
        outbox_committed()
        records = await read_topic(kafka_bootstrap, physical(CUSTODY_EVENTS, fresh_prefix), expect=1, timeout_s=5)
        assert [r.key for r in records] == [b"LOT-NOTIFY"]
    finally:
        await close_notifier()
        relay.stop()
        await task


async def test_rolled_back_events_are_never_published(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    dsn = clean_dbs["custody"].replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(RuntimeError, match="business rule failed"):
            async with conn.transaction():
                await enqueue_raw(conn, CUSTODY_EVENTS, [make_event("LOT-RB", 1)])
                raise RuntimeError("business rule failed")
        async with conn.transaction():
            await enqueue_raw(conn, CUSTODY_EVENTS, [make_event("LOT-OK", 2)])
    finally:
        await conn.close()
    relay = relay_for(clean_dbs["custody"], kafka_bootstrap, fresh_prefix)
    records = await published(relay, kafka_bootstrap, fresh_prefix, expect=2, timeout_s=3)
    assert [r.key for r in records] == [b"LOT-OK"]


async def test_events_wait_in_the_outbox_while_kafka_is_unreachable(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    dsn = clean_dbs["custody"].replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await enqueue_raw(conn, CUSTODY_EVENTS, [make_event("LOT-W", i) for i in range(20)])
    finally:
        await conn.close()
    # A relay pointed at a port where no broker listens: it retries, and publishes nothing.
    dead = relay_for(clean_dbs["custody"], "127.0.0.1:1", fresh_prefix)
    dead_task = asyncio.create_task(dead.run())
    await asyncio.sleep(1.5)  # let it try and fail a few rounds
    dead.stop()
    await asyncio.wait_for(dead_task, 20)
    assert dead.published == 0
    assert await unpublished(dsn) == 20
    # The broker "returns": a relay that reaches it publishes everything that waited.
    live = relay_for(clean_dbs["custody"], kafka_bootstrap, fresh_prefix)
    task = asyncio.create_task(live.run())
    try:
        records = await read_topic(kafka_bootstrap, physical(CUSTODY_EVENTS, fresh_prefix), expect=20)
        await wait_for(lambda: _zero(dsn), timeout_s=10, what="sent rows deleted")
    finally:
        live.stop()
        await task
    assert [CloudEvent.from_kafka(r.headers, r.key, r.value).data["n"] for r in records] == list(range(20))


async def _zero(dsn: str) -> bool:
    return await unpublished(dsn) == 0


async def test_two_relays_side_by_side_keep_order_and_lose_nothing(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    dsn = clean_dbs["custody"].replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)
    expected: dict[str, list[int]] = defaultdict(list)
    relays = [relay_for(clean_dbs["custody"], kafka_bootstrap, fresh_prefix, batch_size=25) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        for n in range(40):  # writes keep arriving while both relays run
            events = [make_event(f"LOT-{k}", n) for k in range(10)]
            async with conn.transaction():
                await enqueue_raw(conn, CUSTODY_EVENTS, events)
            for e in events:
                expected[e.key].append(n)
        records = await read_topic(kafka_bootstrap, physical(CUSTODY_EVENTS, fresh_prefix), expect=400)
    finally:
        await conn.close()
        for r in relays:
            r.stop()
        await asyncio.gather(*tasks)
    got: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        got[r.key.decode()].append(CloudEvent.from_kafka(r.headers, r.key, r.value).data["n"])
    assert got == expected
    assert sum(r.published for r in relays) == 400


async def test_the_active_relay_deletes_what_was_sent_and_vacuums_the_outbox(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """Sent rows are deleted, and the relay vacuums the table behind them (their index entries would otherwise stay
    in front of every claim until autovacuum came by)."""
    dsn = clean_dbs["custody"].replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)

    async def vacuums() -> int:
        sql = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'"
        return int(await conn.fetchval(sql))

    relay = relay_for(clean_dbs["custody"], kafka_bootstrap, fresh_prefix, vacuum_interval_s=0.3)
    task = asyncio.create_task(relay.run())
    try:
        before = await vacuums()
        async with conn.transaction():
            await enqueue_raw(conn, CUSTODY_EVENTS, [make_event("LOT-V", i) for i in range(50)])
        outbox_committed()
        await read_topic(kafka_bootstrap, physical(CUSTODY_EVENTS, fresh_prefix), expect=50)
        await wait_for(lambda: _zero(dsn), timeout_s=10, what="sent rows deleted")

        async def vacuumed() -> bool:
            relay.wake()  # a round, so that the relay looks at the time
            return await vacuums() > before

        await wait_for(vacuumed, timeout_s=10, what="the relay to vacuum the outbox")
        assert relay.published == 50
    finally:
        relay.stop()
        await task
        await conn.close()
