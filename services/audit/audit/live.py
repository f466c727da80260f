"""The live stream's fan-out to every `GET /stream` listener: the flags and custody events `audit.stream_feed` reads
from `audit.flags` and `custody.events`; the relay's wake-up after the consumer's commits; and the scheduled look for
shipments overdue in transit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from audit.projection import Projection
from shared.outbox import outbox_committed

log = logging.getLogger("audit.live")


class Inbox(asyncio.Queue[dict[str, Any]]):
    """A listener's queue; `cut` once it overflowed (the listener is dropped, never given a stream with a hole)."""

    cut: bool = False


class Broadcaster:
    """Each listener has a bounded queue; a listener too slow to keep up is cut off (its stream ends, and it resumes
    with its last event id: `audit.stream_feed`), never the service. At most `max_listeners` at once (`full`)."""

    def __init__(self, maxsize: int = 1000, max_listeners: int = 1000) -> None:
        self.listeners: set[Inbox] = set()
        self.maxsize = maxsize
        self.max_listeners = max_listeners

    @property
    def full(self) -> bool:
        return len(self.listeners) >= self.max_listeners

    def subscribe(self) -> Inbox:
        q = Inbox(self.maxsize)
        self.listeners.add(q)
        return q

    def unsubscribe(self, q: Inbox) -> None:
        self.listeners.discard(q)

    def cut_all(self) -> None:
        for q in self.listeners:
            q.cut = True
        self.listeners.clear()

    def publish(self, item: dict[str, Any]) -> None:
        for q in list(self.listeners):
            if q.full():
                q.cut = True
                self.listeners.discard(q)
            else:
                q.put_nowait(item)


def after_commit(projection: Projection) -> None:
    """After the consumer's commit: wake the relay when flags were raised or a registry fact may have re-judged flags
    (audit.flag.updated). Nothing goes to /stream from here: every replica reads the custody events and the flags
    from their topics (`audit.stream_feed`), whichever replica applied them."""
    raised, seen = projection.drain()
    if raised or any(e.type.startswith("registry.") for e in seen):
        outbox_committed()


class _Skipped(Exception):
    """This round of the overdue check is not run (see `OverdueChecker`)."""


class OverdueChecker:
    """Every `interval_s`: flag shipments that were never received within their allowed transit time.

    It writes flags, so it runs only while `may_write()` (the service's consumer holds the projection's writer lock):
    a replica whose consumer waits for the lock, or a replay holding it, is not written beside."""

    def __init__(
        self,
        dsn: str,
        projection: Projection,
        interval_s: float,
        grace_s: float = 60.0,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.dsn = dsn
        self.may_write = may_write
        self.grace_s = grace_s
        self.projection = projection
        self.interval_s = interval_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self.may_write():
                    raise _Skipped
                conn = await asyncpg.connect(self.dsn)
                try:
                    async with conn.transaction():
                        await self.projection.check_overdue(conn, datetime.now(UTC), self.grace_s)
                    raised, _ = self.projection.drain()
                    if raised:
                        outbox_committed()
                finally:
                    await conn.close()
            except _Skipped:
                log.debug("overdue check skipped: this service's consumer does not hold the projection's writer lock")
            except Exception as exc:  # noqa: BLE001 - try again next time
                log.warning("overdue check failed: %r", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
            except TimeoutError:
                pass
