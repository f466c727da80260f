"""Writing events into the outbox, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import raw_connection
from shared.events import CloudEvent

INSERT_SQL = """
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::text[], $9::jsonb[])
"""


def outbox_columns(topic: str, events: Sequence[CloudEvent]) -> list[list[Any]]:
    """The nine column arrays of INSERT_SQL's `unnest` (for statements that write the outbox with other tables)."""
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
    ]


async def enqueue_raw(conn: asyncpg.Connection, topic: str, events: Sequence[CloudEvent]) -> None:
    """Insert events for `topic` (its logical name) in one statement; commits with the caller's transaction."""
    if not events:
        return
    await conn.execute(INSERT_SQL, *outbox_columns(topic, events))


async def enqueue(session: AsyncSession, topic: str, events: Sequence[CloudEvent]) -> None:
    """Same as `enqueue_raw`, inside an ORM session's transaction (same connection, same commit)."""
    await enqueue_raw(await raw_connection(session), topic, events)
