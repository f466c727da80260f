"""PostgreSQL stopped under a running custody process: 503 + problem+json (never a 500, never a partial write),
then recovery by itself once PostgreSQL is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from shared.topics import CUSTODY_EVENTS, ensure_topics, physical
from tests.conftest import ENV, session_prefix, settings_env
from tests.faults.conftest import Party, drop_topics, dsn, fetch, infra, lot_body, register_party, scalar
from tests.helpers import read_topic, spawn, stop, wait_for, wait_http_ok

REGISTRY_PORT = 18811
CUSTODY_PORT = 18812
CUSTODY_URL = f"http://127.0.0.1:{CUSTODY_PORT}"


@dataclass
class Custody:
    mine: Party
    dsn: str
    proc_alive: Any
    prefix: str


@asynccontextmanager
async def custody_process(database_urls: dict[str, str]) -> AsyncIterator[Custody]:
    """Registry and custody as processes on topics of their own; a registered mine."""
    prefix = session_prefix("fdb")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    registry_url = f"http://127.0.0.1:{REGISTRY_PORT}"
    registry = spawn(
        "registry",
        settings_env("registry", database_urls, prefix, port=REGISTRY_PORT, relay_poll_interval_s=0.2),
        "faults-db-registry.log",
    )
    custody = spawn(
        "custody",
        settings_env(
            "custody",
            database_urls,
            prefix,
            port=CUSTODY_PORT,
            registry_url=registry_url,
            auth_refresh_s=1.0,
            relay_poll_interval_s=0.2,
            consumer_group=f"custody-{uuid.uuid4().hex[:6]}",
        ),
        "faults-db-custody.log",
    )
    try:
        await wait_http_ok(f"{registry_url}/readyz", proc=registry)
        await wait_http_ok(f"{CUSTODY_URL}/readyz", proc=custody)
        custody_dsn = dsn(database_urls["custody"])
        async with httpx.AsyncClient(base_url=registry_url, timeout=10) as reg:
            mine = await register_party(reg, custody_dsn, "mine")
        yield Custody(mine, custody_dsn, lambda: custody.poll() is None, prefix)
    finally:
        stop(custody)
        stop(registry)
        await drop_topics(prefix)


async def once(method: str, path: str, **kw: Any) -> httpx.Response:
    """One request on a connection of its own (what a retrying script with a fresh connection sees)."""
    async with httpx.AsyncClient(base_url=CUSTODY_URL, timeout=15) as c:
        return await c.request(method, path, **kw)


def assert_unavailable(r: httpx.Response, what: str) -> None:
    assert r.status_code == 503, f"{what}: expected 503 while PostgreSQL is down, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["type"] == "/problems/service-unavailable", body
    assert body["status"] == 503
    assert body.get("detail"), body
    assert int(r.headers["Retry-After"]) > 0


async def test_postgres_down_answers_503_and_recovers(database_urls: dict[str, str]) -> None:
    async with custody_process(database_urls) as cu:
        auth = cu.mine.auth
        known = f"FDB-{uuid.uuid4().hex[:8]}"
        r = await once("POST", "/lots", json=lot_body(known, "S-1"), headers=auth)
        assert r.status_code == 201, r.text
        prefix = r.json()["lot_id"].split(":", 1)[0]  # the mine's lots are <prefix>:<local id>
        lost = f"FDB-LOST-{uuid.uuid4().hex[:8]}"
        after = f"FDB-AFTER-{uuid.uuid4().hex[:8]}"
        pg_stopped = True
        try:
            # 1. PostgreSQL goes away: writes and reads answer 503 problem+json.
            await infra("stop", "pg")
            t_down = time.monotonic()
            attempt = 0
            while attempt < 3 or time.monotonic() - t_down < 3.0:  # dead pooled connections, then refused connects
                w = await once(
                    "POST", "/lots", json=lot_body(lost, "S-2"), headers={**auth, "Idempotency-Key": f"k-{lost}"}
                )
                assert_unavailable(w, f"write #{attempt}")
                assert_unavailable(await once("GET", f"/lots/{known}", headers=auth), f"read #{attempt}")
                attempt += 1
                await asyncio.sleep(0.2)  # pacing of a retrying client, not a wait for a condition
            ready = await once("GET", "/readyz")
            assert ready.status_code == 503, ready.text

            # 2. PostgreSQL comes back; the service recovers by itself (no restart).
            await infra("start", "pg")
            pg_stopped = False
            outage_s = time.monotonic() - t_down
            statuses: list[int] = []

            async def write_succeeds() -> bool:
                r = await once(
                    "POST", "/lots", json=lot_body(after, "S-3"), headers={**auth, "Idempotency-Key": f"k-{after}"}
                )
                statuses.append(r.status_code)
                assert r.status_code in (201, 503), f"during recovery: {r.status_code} {r.text}"
                return r.status_code == 201

            t_up = time.monotonic()
            await wait_for(write_succeeds, timeout_s=30, what="a write to succeed after PostgreSQL restarted")
            recovery_s = time.monotonic() - t_up
            g = await once("GET", f"/lots/{known}", headers=auth)
            assert g.status_code == 200, g.text
            assert cu.proc_alive(), "custody survived the outage"
        finally:
            if pg_stopped:
                await infra("start", "pg")

        # 3. Nothing of the refused write; all of the write after recovery (stored under their full ids).
        lost, after = f"{prefix}:{lost}", f"{prefix}:{after}"
        for table in ("lots", "lot_events"):
            assert await scalar(cu.dsn, f"SELECT count(*) FROM {table} WHERE lot_id = $1", lost) == 0, table
        assert await scalar(cu.dsn, "SELECT count(*) FROM outbox WHERE key = $1", lost) == 0
        assert await scalar(cu.dsn, "SELECT count(*) FROM lots WHERE lot_id = $1", after) == 1
        assert await scalar(cu.dsn, "SELECT count(*) FROM lot_events WHERE lot_id = $1", after) == 1
        # Its event went out exactly once, through the outbox (the relay deletes a row once Kafka acknowledged it, so
        # the row may be gone already: the topic is where to count it); nothing of the refused write went out.
        event_id = str((await fetch(cu.dsn, "SELECT event_id FROM lot_events WHERE lot_id = $1", after))[0]["event_id"])
        records = await read_topic(ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, cu.prefix), expect=2)
        assert [dict(r.headers)["ce_id"].decode() for r in records if r.key == after.encode()] == [event_id]
        assert [r for r in records if r.key == lost.encode()] == []
        print(f"\n  PostgreSQL down {outage_s:.1f}s; a write succeeded {recovery_s:.2f}s after its start ({statuses})")


async def test_postgres_down_keeps_the_connection_usable(database_urls: dict[str, str]) -> None:
    async with custody_process(database_urls) as cu, httpx.AsyncClient(base_url=CUSTODY_URL, timeout=15) as c:
        known = f"FDB-{uuid.uuid4().hex[:8]}"
        assert (await c.post("/lots", json=lot_body(known, "S-1"), headers=cu.mine.auth)).status_code == 201
        try:
            await infra("stop", "pg")
            assert_unavailable(await c.get(f"/lots/{known}", headers=cu.mine.auth), "first read")
            assert_unavailable(await c.get(f"/lots/{known}", headers=cu.mine.auth), "second read, same connection")
        finally:
            await infra("start", "pg")
