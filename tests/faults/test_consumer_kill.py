"""The audit consumer SIGKILLed half way through a topic of custody events: after a restart no flag is lost and
none is doubled, and every event takes effect exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter

import asyncpg
import httpx

from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.topics import ensure_topics
from tests.conftest import ENV, serve_in_process, session_prefix, settings_env
from tests.faults.conftest import drop_topics, dsn, fetch, lot_body, receipt_body, register_party, scalar, ship_body
from tests.helpers import spawn, stop, wait_for, wait_http_ok

REGISTRY_PORT = 18821
SHIPMENTS = 120  # 360 custody events: register, ship, receive with a changed seal
MAX_RECORDS = 5  # events per consumer transaction, so the kill lands between batches


async def test_consumer_killed_mid_topic_loses_and_doubles_no_flag(database_urls: dict[str, str]) -> None:
    prefix = session_prefix("fck")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    custody_dsn, audit_dsn = dsn(database_urls["custody"]), dsn(database_urls["audit"])
    # The reference data earlier modules left in the session's audit database (the demo's risk profiles of RW, CAHRA
    # areas...) would add origin flags to these lots: this test counts the seal flags alone.
    conn = await asyncpg.connect(audit_dsn)
    try:
        await conn.execute("TRUNCATE risk_profiles, asm_presence, coexistence_agreements, cahra_areas, certifications")
    finally:
        await conn.close()
    registry_url = f"http://127.0.0.1:{REGISTRY_PORT}"
    registry = spawn(
        "registry",
        settings_env("registry", database_urls, prefix, port=REGISTRY_PORT, relay_poll_interval_s=0.2),
        "faults-consumer-registry.log",
    )
    consumer_env = settings_env(
        "audit",
        database_urls,
        prefix,
        consumer_group=f"audit-kill-{uuid.uuid4().hex}",
        consumer_max_records=MAX_RECORDS,
    )
    consumer = None
    try:
        # 1. A topic prefilled by a real custody (in-process, with its relay): receipts whose seal changed.
        await wait_http_ok(f"{registry_url}/readyz", proc=registry)
        settings = CustodySettings(
            database_url=database_urls["custody"],
            topic_prefix=prefix,
            registry_url=registry_url,
            kafka_bootstrap_servers=ENV.kafka_bootstrap,
            auth_refresh_s=1.0,
            relay_poll_interval_s=0.2,
            consumer_group=f"custody-{uuid.uuid4().hex[:6]}",
        )
        lots: list[str] = []
        shipments: list[str] = []
        async with (
            httpx.AsyncClient(base_url=registry_url, timeout=10) as reg,
            serve_in_process(custody_app(settings)) as c,
        ):
            mine = await register_party(reg, custody_dsn, "mine")
            trader = await register_party(reg, custody_dsn, "trader")
            for i in range(SHIPMENTS):
                tag = f"FCK-{i}-{uuid.uuid4().hex[:6]}"  # the bag's tag, and its local lot id
                r = await c.post("/lots", json=lot_body(tag, f"S-{i}"), headers=mine.auth)
                assert r.status_code == 201, r.text
                lot = r.json()["lot_id"]  # scoped to the mine: <prefix>:<local id>
                r = await c.post(f"/lots/{lot}/shipments", json=ship_body(trader.id, f"S-{i}", tag), headers=mine.auth)
                assert r.status_code == 201, r.text
                sid = r.json()["shipment_id"]
                r = await c.post(
                    f"/shipments/{sid}/receipt", json=receipt_body(f"BROKEN-{i}", tag), headers=trader.auth
                )
                assert r.status_code == 200, r.text
                lots.append(lot)
                shipments.append(sid)
            event_ids = [
                r["event_id"]
                for r in await fetch(custody_dsn, "SELECT event_id FROM lot_events WHERE lot_id = ANY($1)", lots)
            ]
            assert len(event_ids) == 3 * SHIPMENTS

            async def all_published() -> bool:
                sql = "SELECT count(*) FROM outbox WHERE event_id = ANY($1)"  # sent rows are deleted
                return await scalar(custody_dsn, sql, event_ids) == 0

            await wait_for(all_published, timeout_s=30, what="custody's relay to publish every event")

        # 2. The audit consumer as its own process, let through one batch at a time: the test holds a SHARE lock on
        # received_events, which every batch writes, so the consumer stops inside its transaction. To let one batch
        # through, a second connection queues the same lock behind the consumer's request, then the first lets go:
        # the consumer commits that batch and is stopped again in the next. Once a quarter has taken effect it is
        # SIGKILLed there, mid-batch (a timed kill raced a consumer that applies 360 events in a blink).
        async def applied() -> int:
            return await scalar(audit_dsn, "SELECT count(*) FROM received_events WHERE event_id = ANY($1)", event_ids)

        name = "audit-consumer"  # the consumer's application_name in pg_stat_activity
        watcher = await asyncpg.connect(audit_dsn)
        gate = await LockGate.closed(audit_dsn)
        try:

            async def waiting_for_locks(n: int) -> bool:
                assert consumer is not None and consumer.poll() is None, "the consumer is running"
                waiting = await watcher.fetch(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                names = [w["application_name"] for w in waiting]
                return names.count(name) == 1 and len(names) == n

            t0 = time.monotonic()
            consumer = spawn("audit.consumer", consumer_env, "faults-audit-consumer.log")
            batches = 0
            while True:
                await wait_for(lambda: waiting_for_locks(1), timeout_s=60, what="the consumer stopped mid-batch")
                if await applied() >= len(event_ids) // 4:
                    break
                queued = await LockGate.queue(audit_dsn)  # behind the consumer's request
                await wait_for(lambda: waiting_for_locks(2), timeout_s=10, what="the next gate queued")
                await gate.open()
                gate = await queued.granted()  # the consumer committed one batch and asks again
                batches += 1
            at_kill = await applied()
            consumer.send_signal(signal.SIGKILL)
            assert consumer.wait(10) == -signal.SIGKILL
            assert at_kill <= batches * MAX_RECORDS, f"{batches} batches let through, yet {at_kill} events applied"
            assert 0 < at_kill < len(event_ids), f"the kill must land half way, not after {at_kill}"
        finally:
            await gate.open()  # the killed consumer's transaction gets its lock, then finds its client gone
            await watcher.close()

        # 3. Restarted, it finishes the topic.
        consumer = spawn("audit.consumer", consumer_env, "faults-audit-consumer.log")

        async def all_applied() -> bool:
            return await scalar(
                audit_dsn, "SELECT count(*) FROM processed_events WHERE id = ANY($1)", event_ids
            ) == len(event_ids)

        await wait_for(all_applied, timeout_s=90, what=f"all {len(event_ids)} events applied after the restart")
        elapsed = time.monotonic() - t0
    finally:
        stopped = stop(consumer) if consumer is not None else 0
        stop(registry)
        await drop_topics(prefix)
        assert stopped == 0, "the consumer stops cleanly on SIGTERM"

    # 4. One effect per event; exactly one seal_mismatch flag per shipment and no other flag on these lots.
    received = Counter(
        r["event_id"]
        for r in await fetch(audit_dsn, "SELECT event_id FROM received_events WHERE event_id = ANY($1)", event_ids)
    )
    processed = {
        r["id"] for r in await fetch(audit_dsn, "SELECT id FROM processed_events WHERE id = ANY($1)", event_ids)
    }
    assert set(received) == set(event_ids) and processed == set(event_ids), "no event lost"
    assert {k: v for k, v in received.items() if v != 1} == {}, "no event took effect twice"
    # processed_events is keyed by (source, id): counting its rows by id cannot find a double. What an event applied
    # twice would change: a shipment applied again after its receipt is dated before the lot's last custody event,
    # a `time_contradiction` flag of its own (an extra (rule, cause) below); and every flag the projection raises
    # puts an `audit.flag.*` event in audit's outbox (no relay runs in this test: they stay there), so a receipt
    # judged twice would publish its flag twice.
    flags = await fetch(audit_dsn, "SELECT rule, cause, lot_id FROM flags WHERE lot_id = ANY($1)", lots)
    assert Counter((f["rule"], f["cause"]) for f in flags) == Counter(("seal_mismatch", s) for s in shipments), flags
    assert {f["lot_id"] for f in flags} == set(lots)
    published = Counter(
        r["key"]
        for r in await fetch(audit_dsn, "SELECT key FROM outbox WHERE type LIKE 'audit.flag.%' AND key = ANY($1)", lots)
    )
    assert published == Counter(lots), f"flag events per lot, one each: {published}"
    print(
        f"\n  consumer SIGKILLed mid-batch after {at_kill} of {len(event_ids)} events applied ({batches} batches); "
        f"after the restart all applied once and {len(flags)} flags, one per shipment ({elapsed:.1f}s)"
    )


class LockGate:
    """A transaction holding a SHARE lock on `received_events`: while it is held, no audit batch can commit."""

    def __init__(self, conn: asyncpg.Connection, request: asyncio.Task[str]) -> None:
        self.conn, self.request = conn, request

    @classmethod
    async def queue(cls, audit_dsn: str) -> LockGate:
        conn = await asyncpg.connect(audit_dsn)
        await conn.execute("BEGIN")
        return cls(conn, asyncio.create_task(conn.execute("LOCK TABLE received_events IN SHARE MODE")))

    @classmethod
    async def closed(cls, audit_dsn: str) -> LockGate:
        return await (await cls.queue(audit_dsn)).granted()

    async def granted(self) -> LockGate:
        await asyncio.wait_for(self.request, 30)
        return self

    async def open(self) -> None:
        if not self.conn.is_closed():
            await self.conn.close()  # ends the transaction and its lock
