"""Small helpers for tests on real infrastructure: event factories, reading topics, waiting for conditions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.events import CloudEvent


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
