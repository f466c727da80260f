"""`/metrics`, `/healthz` and `/readyz` of a relay or consumer run as its own process (issue 28; `shared.ops_server`),
and `python -m audit.consumer` serving them on AUDIT_OPS_PORT with the overdue check beside it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from shared.ops_server import serving
from tests.audit.conftest import audit_databases
from tests.conftest import ENV, ROOT, free_port, session_prefix
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Worker:
    def __init__(self) -> None:
        self.problem: str | None = None

    def readiness(self) -> str | None:
        return self.problem


async def test_the_ops_routes_answer_and_readyz_follows_the_worker() -> None:
    port = free_port()
    w = Worker()
    async with (
        serving(port, "test-relay", [("relay", w)], host="127.0.0.1"),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c,
    ):

        async def up() -> bool:
            try:
                return (await c.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, timeout_s=10, what="the ops server")
        r = await c.get("/readyz")
        assert r.json() == {"status": "ready", "service": "test-relay", "checks": {"relay": "ok"}}
        w.problem = "publishing has failed for 31 s"
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"] == {"relay": "publishing has failed for 31 s"}
        metrics = await c.get("/metrics")
        assert metrics.status_code == 200 and "python_info" in metrics.text
    with pytest.raises(httpx.TransportError):  # gone with the block
        async with httpx.AsyncClient() as c:
            await c.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


async def test_nothing_is_served_without_a_port() -> None:
    async with serving(None, "x", []):
        pass


async def test_the_audit_consumer_on_its_own_serves_them(infra: None) -> None:
    prefix = session_prefix("ops")
    from shared.topics import ensure_topics

    await ensure_topics(ENV.kafka_bootstrap, prefix)
    port = free_port()
    async with audit_databases("ops", n=1) as (url,):
        env = {
            **os.environ,
            "AUDIT_DATABASE_URL": url.replace("postgresql://", "postgresql+asyncpg://"),
            "AUDIT_TOPIC_PREFIX": prefix,
            "AUDIT_KAFKA_BOOTSTRAP_SERVERS": ENV.kafka_bootstrap,
            "AUDIT_CONSUMER_GROUP": f"ops-{uuid.uuid4().hex[:6]}",
            "AUDIT_OPS_PORT": str(port),
            "AUDIT_OVERDUE_CHECK_S": "0.2",
        }
        proc = subprocess.Popen([sys.executable, "-m", "audit.consumer"], cwd=ROOT, env=env, stdout=subprocess.PIPE)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:

                async def ready() -> bool:
                    try:
                        return (await c.get("/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_for(ready, timeout_s=30, what="the consumer's /readyz")
                checks = (await c.get("/readyz")).json()["checks"]
                assert list(checks) == [f"consumer:{env['AUDIT_CONSUMER_GROUP']}"]
                metrics = (await c.get("/metrics")).text
                assert "consumer_last_poll_timestamp_seconds" in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0
        assert b"overdue check failed" not in out  # it ran beside the consumer, every 0.2 s, without failing
