"""Writing events into the outbox, inside the caller's transaction, and waking the relay once it has committed.

Waking: after committing outbox rows a writer calls `outbox_committed()`. When the relay leading for this database
runs in the same process (the default: every service runs its relay), that sets an event, nothing more. Otherwise
(the relay runs as `python -m <service>.relay`, or another replica leads) it sends `NOTIFY outbox` on a connection of
its own, after the commit and coalesced: one NOTIFY in flight, one more if rows committed meanwhile. A writer that
does not call it is published at the relay's next poll (`relay_poll_interval_s`), never lost.

This replaces a NOTIFY from a trigger on the outbox. PostgreSQL takes a cluster-wide lock for a transaction that
notifies, from pre-commit to the end of its commit, WAL flush included, so every writing transaction of every service
committed one at a time: measured with bench/write_bench.py, dropping the trigger raised plain asyncpg writing the
same rows from ~1,200-1,400 to ~1,770 writes/s and custody's API from ~410-550 to ~580 writes/s (p99 47 ms, from
53-69).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.db import OUTBOX_NOTIFY_CHANNEL, raw_connection
from shared.events import CloudEvent
from shared.tracing import current_traceparent

log = logging.getLogger("shared.outbox")

INSERT_SQL = """
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data, traceparent)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::text[], $9::jsonb[], $10::text[])
"""
OUTBOX_COLUMNS = ("event_id", "topic", "key", "type", "source", "subject", "time", "dataschema", "data", "traceparent")


def outbox_columns(topic: str, events: Sequence[CloudEvent]) -> list[list[Any]]:
    """The ten column arrays of INSERT_SQL's `unnest` (for statements that write the outbox with other tables), in
    `OUTBOX_COLUMNS`' order. An event's `traceparent` is its own if it has one (a flag: the event that raised it),
    else the one of the request or event being handled now (`shared.tracing`)."""
    traceparent = current_traceparent.get()
    return [
        [e.id for e in events],
        [topic] * len(events),
        [e.key for e in events],
        [e.type for e in events],
        [e.source for e in events],
        [e.subject for e in events],
        [e.time for e in events],
        [e.dataschema for e in events],
        [orjson.dumps(e.data).decode() for e in events],
        [e.traceparent or traceparent for e in events],
    ]


async def enqueue_raw(conn: asyncpg.Connection, topic: str, events: Sequence[CloudEvent]) -> None:
    """Insert events for `topic` (its logical name) in one statement; commits with the caller's transaction."""
    if not events:
        return
    await conn.execute(INSERT_SQL, *outbox_columns(topic, events))


async def enqueue(session: AsyncSession, topic: str, events: Sequence[CloudEvent]) -> None:
    """Same as `enqueue_raw`, inside an ORM session's transaction (same connection, same commit); the relay is woken
    when the session commits."""
    await enqueue_raw(await raw_connection(session), topic, events)
    if events:
        session.info[_SESSION_WROTE_OUTBOX] = True


# --- waking the relay ----------------------------------------------------------------------------------------

_SESSION_WROTE_OUTBOX = "mcoc_wrote_outbox"


class LocalRelay(Protocol):
    @property
    def leading(self) -> bool: ...
    def wake(self) -> None: ...


class _Notifier:
    """`NOTIFY outbox` for a relay in another process: after the commit, on a connection of its own, coalesced."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._again:
            self._again = False
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn, timeout=5)
                await self._conn.execute(f"NOTIFY {OUTBOX_NOTIFY_CHANNEL}")
            except Exception as exc:  # noqa: BLE001 - the relay polls anyway
                log.debug("outbox NOTIFY failed (the relay's poll interval covers it): %r", exc)
                await self.close()
                return

    async def close(self) -> None:
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.terminate()


_relays: set[LocalRelay] = set()
_notifier: _Notifier | None = None


def register_relay(relay: LocalRelay) -> None:
    """A relay running in this process (the relay does this itself while it runs)."""
    _relays.add(relay)


def unregister_relay(relay: LocalRelay) -> None:
    _relays.discard(relay)


def configure_notifier(dsn: str | None) -> None:
    """The database writers of this process commit to (the runtime sets it); None: wake local relays only."""
    global _notifier
    _notifier = _Notifier(dsn) if dsn else None


async def close_notifier() -> None:
    global _notifier
    if _notifier is not None:
        notifier, _notifier = _notifier, None
        await notifier.close()


def outbox_committed() -> None:
    """Call after committing outbox rows (from the event loop): wakes the relay that publishes them."""
    for relay in _relays:
        if relay.leading:
            relay.wake()
            return
    if _notifier is not None:
        _notifier.request()


@event.listens_for(Session, "after_commit")
def _session_committed(session: Session) -> None:
    if session.info.pop(_SESSION_WROTE_OUTBOX, False):
        outbox_committed()


@event.listens_for(Session, "after_rollback")
def _session_rolled_back(session: Session) -> None:
    session.info.pop(_SESSION_WROTE_OUTBOX, None)
