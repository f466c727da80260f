"""Small helpers for tests on real infrastructure: event factories, reading topics, waiting for conditions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.events import CloudEvent

ROOT = Path(__file__).resolve().parents[1]


def make_event(key: str, n: int = 0, source: str = "/custody", type: str = "custody.test.happened") -> CloudEvent:
    return CloudEvent(type=type, source=source, subject=key, key=key, data={"key": key, "n": n, "pad": "x" * 64})


async def read_topic(bootstrap: str, topic: str, *, expect: int, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Read a topic from the beginning (no group) until `expect` records arrived or the timeout passed."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for recs in batch.values():
                records.extend(recs)
        # Drain briefly so that duplicates beyond `expect` are seen too.
        batch = await consumer.getmany(timeout_ms=300, max_records=5000)
        for recs in batch.values():
            records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    """Poll `condition` until true; fail with `what` after `timeout_s` (no bare sleeps in tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval_s)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def spawn(module: str, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    """`python -m module` as a real process with extra environment; output to var/log/<log_name>."""
    log_dir = ROOT / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / log_name, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", module], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
    )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout_s)


async def wait_http_ok(url: str, *, timeout_s: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    async with httpx.AsyncClient(timeout=2) as client:

        async def ok() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"process serving {url} exited with {proc.returncode}")
            try:
                return (await client.get(url)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ok, timeout_s=timeout_s, what=f"{url} to answer 200", interval_s=0.1)
