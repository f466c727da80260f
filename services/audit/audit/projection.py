"""The audit projection: what the consumer does with each new event, inside the consumer's transaction.

For now it records every event in `received_events` (the evidence trail later rules point at). Later issues add
the lots, genealogy and registry projections and the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from shared.consumer import Delivered

INSERT_RECEIVED_SQL = """
INSERT INTO received_events (event_id, source, type, subject, key, time, data, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::jsonb[], $8::text[], $9::int[], $10::bigint[])
"""


async def apply_batch(conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
    """Apply new events in order (the consumer has already dropped those processed before)."""
    await conn.execute(
        INSERT_RECEIVED_SQL,
        [d.event.id for d in batch],
        [d.event.source for d in batch],
        [d.event.type for d in batch],
        [d.event.subject for d in batch],
        [d.event.key for d in batch],
        [d.event.time for d in batch],
        [orjson.dumps(d.event.data).decode() for d in batch],
        [d.topic for d in batch],
        [d.partition for d in batch],
        [d.offset for d in batch],
    )
