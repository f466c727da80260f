"""Helpers for fault tests: drive `deploy/local/infra.sh` with the suite's MCOC_* environment, talk to databases,
and register participants through a registry process."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from shared.topics import delete_topics
from tests.conftest import ENV, OPERATOR, ROOT, bearer
from tests.helpers import wait_for

INFRA_SH = ROOT / "deploy" / "local" / "infra.sh"


def infra_env() -> dict[str, str]:
    """The environment infra.sh sees: the suite's MCOC_* values, defaulting exactly like infra.sh does."""
    env = dict(os.environ)
    env.setdefault("MCOC_VAR", str(ROOT / "var"))
    env.setdefault("MCOC_PG_PORT", str(ENV.pg_port))
    env.setdefault("MCOC_KAFKA_PORT", "9092")
    env.setdefault("MCOC_KAFKA_CONTROLLER_PORT", "9093")
    return env


def check_kafka_matches() -> None:
    """The broker infra.sh kills must be the one the suite talks to."""
    port = infra_env()["MCOC_KAFKA_PORT"]
    assert ENV.kafka_bootstrap.endswith(f":{port}"), (
        f"MCOC_TEST_KAFKA_BOOTSTRAP={ENV.kafka_bootstrap} is not the broker infra.sh manages (port {port})"
    )


async def infra(*args: str, timeout_s: float = 90) -> float:
    """Run `infra.sh <args>`; fail loudly with its output on error. Returns the seconds it took."""
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(INFRA_SH),
        *args,
        env=infra_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"infra.sh {' '.join(args)} did not finish in {timeout_s:.0f}s") from None
    assert proc.returncode == 0, f"infra.sh {' '.join(args)} failed ({proc.returncode}):\n{out.decode()}"
    return time.monotonic() - t0


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def scalar(dsn: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


def dsn(url: str) -> str:
    return url.replace("+asyncpg", "")


@dataclass
class Party:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


async def register_party(registry: httpx.AsyncClient, custody_dsn: str, kind: str, country: str = "RW") -> Party:
    """Register a participant with the operator token and wait until custody has learnt of it."""
    body: dict[str, Any] = {"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": country}
    if kind == "mine":
        body["mining_type"] = "asm"
    r = await registry.post("/participants", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    out = r.json()
    pid = out["participant"]["id"]

    async def known() -> bool:
        return await scalar(custody_dsn, "SELECT count(*) FROM participants WHERE id = $1", pid) == 1

    await wait_for(known, timeout_s=30, what=f"custody to learn of participant {pid}")
    return Party(pid, out["credential"]["token"])


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def lot_body(lot_id: str, seal: str) -> dict[str, Any]:
    return {
        "lot_id": lot_id,
        "mineral": "tin",
        "form": "ore",
        "mass_kg": 100,
        "produced_at": ago(days=3),
        "tag": lot_id,
        "seal": seal,
    }


def ship_body(to: str, seal: str, tag: str | None = None) -> dict[str, Any]:
    """`tag`: the bag's tag (`lot_body` tags a lot with its id; bag-and-tag flags a first shipment without it)."""
    return {"to": to, "mass_kg": 100, "shipped_at": ago(days=2), "seal": seal, "tag": tag, "max_transit_days": 14}


def receipt_body(seal: str, tag: str | None = None) -> dict[str, Any]:
    return {"received_at": ago(days=1), "mass_kg": 100, "seal": seal, "tag": tag}


async def drop_topics(prefix: str) -> None:
    """Delete a test's own topics (best effort: the broker may be the thing under test)."""
    try:
        await delete_topics(ENV.kafka_bootstrap, prefix)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


# --- writers under a fault, and what audit must then hold ------------------------------------------------------------

CLIENTS = 4
# Idle connections dropped after 1 s: httpx's default 5 s equals uvicorn's keep-alive timeout, so a request could go
# out on a connection the server was closing (a ReadError, once in eight runs of the three-broker test under load).
LIMITS = httpx.Limits(max_connections=CLIENTS, keepalive_expiry=1.0)
WRITE_INTERVAL_S = 0.2  # per client: ~20 writes/s in all, ~15 s for 300


@dataclass
class Writes:
    phase: str = "before"  # before -> down -> after
    statuses: dict[str, Counter[int]] = field(
        default_factory=lambda: {p: Counter() for p in ("before", "down", "after")}
    )
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def total(self, phase: str | None = None) -> int:
        return sum(sum(c.values()) for p, c in self.statuses.items() if phase in (None, p))


async def writer(n: int, c: httpx.AsyncClient, mine: Party, trader: Party, w: Writes) -> None:
    """Register a lot, ship it, receive it; again and again until told to stop."""
    i = 0
    while not w.stop.is_set():
        lot = f"FK-{n}-{i}-{uuid.uuid4().hex[:6]}"
        i += 1
        shipment = ""
        for step in ("register", "ship", "receive"):
            phase = w.phase
            try:
                if step == "register":
                    r = await c.post("/lots", json=lot_body(lot, "S"), headers=mine.auth)
                elif step == "ship":
                    r = await c.post(f"/lots/{lot}/shipments", json=ship_body(trader.id, "S"), headers=mine.auth)
                else:
                    r = await c.post(f"/shipments/{shipment}/receipt", json=receipt_body("S"), headers=trader.auth)
            except httpx.HTTPError as exc:
                w.failures.append(f"{step} {lot} in phase {phase}: {exc!r}")
                return
            w.statuses[phase][r.status_code] += 1
            if r.status_code >= 300:
                w.failures.append(f"{step} {lot} in phase {phase}: {r.status_code} {r.text[:300]}")
                return
            if step == "ship":
                shipment = r.json()["shipment_id"]
            await asyncio.sleep(WRITE_INTERVAL_S)  # pacing of a steady client, not a wait for a condition


async def audit_matches_custody(audit_dsn: str, lots: list[str], n: int) -> None:
    """Audit's view of these lots matches custody's one for one (`n` lots registered, shipped and received), and no
    event was applied again out of order (a shipment applied again after its receipt would be dated before it: a
    `time_contradiction` flag)."""
    contradictions = await fetch(
        audit_dsn, "SELECT lot_id, cause FROM flags WHERE rule = 'time_contradiction' AND lot_id = ANY($1)", lots
    )
    assert not contradictions, f"events applied again out of order: {contradictions}"
    seen = await fetch(
        audit_dsn,
        "SELECT (SELECT count(*) FROM lots WHERE lot_id = ANY($1)) AS lots,"
        " (SELECT count(*) FROM shipments WHERE lot_id = ANY($1)) AS shipments,"
        " (SELECT count(*) FROM shipments WHERE lot_id = ANY($1) AND status = 'received') AS received",
        lots,
    )
    assert dict(seen[0]) == {"lots": n, "shipments": n, "received": n}, dict(seen[0])
