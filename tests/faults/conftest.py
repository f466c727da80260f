"""Helpers for fault tests: drive `deploy/local/infra.sh` with the suite's MCOC_* environment, talk to databases,
and register participants through a registry process."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
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
