"""`python -m shared.dead_letter`: list and re-queue the outbox rows a service's relay dead-lettered.

The relay (`shared.relay`) moves a row the broker can never take (too large, not encodable, an invalid topic) from
`outbox` to `dead_letter` and goes on. Once the cause is fixed (the broker's `message.max.bytes` and the relay's
`<SERVICE>_RELAY_MAX_REQUEST_SIZE` raised, say), `requeue` moves the row back to the outbox in one statement: it gets
a new outbox id, so it is published after the rows sent meanwhile, and the relay is woken. A row that still cannot
be sent comes back to `dead_letter`, with a new id and reason.

    python -m shared.dead_letter custody list
    python -m shared.dead_letter custody requeue 1234 1240
    python -m shared.dead_letter --database-url postgresql://postgres@db:5432/custody custody list
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.db import OUTBOX_NOTIFY_CHANNEL
from shared.settings import ServiceSettings, asyncpg_dsn

SERVICES = ("registry", "custody", "audit")

LIST_SQL = """
SELECT id, outbox_id, event_id, topic, key, type, time, octet_length(data::text) AS data_bytes, reason, detail,
       failed_at
FROM dead_letter ORDER BY id LIMIT $1
"""
# One statement: out of dead_letter, into the outbox (a new id: the end of the queue), in the original order.
REQUEUE_SQL = """
WITH moved AS (DELETE FROM dead_letter WHERE id = ANY($1::bigint[]) RETURNING *)
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data, traceparent)
SELECT event_id, topic, key, type, source, subject, time, dataschema, data, traceparent FROM moved ORDER BY id
RETURNING id, event_id
"""


def database_url(service: str) -> str:
    """The service's database URL as the service itself reads it (`<SERVICE>_DATABASE_URL`, or a `.env` file)."""

    class Settings(ServiceSettings):
        model_config = SettingsConfigDict(
            env_prefix=f"{service.upper()}_", env_file=".env", extra="ignore", frozen=True
        )
        database_url: str = Field(f"postgresql+asyncpg://postgres@127.0.0.1:5433/{service}")

    return Settings().database_url


async def list_rows(dsn: str, limit: int = 100) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(LIST_SQL, limit)]
    finally:
        await conn.close()


async def requeue(dsn: str, ids: Sequence[int]) -> list[tuple[int, int, str]]:
    """Move dead letters back to the outbox and wake the relay; returns (dead-letter id, new outbox id, event id)
    for each row moved (ids that are not in dead_letter are left out)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            old = {
                r["event_id"]: r["id"]
                for r in await conn.fetch(
                    "SELECT id, event_id FROM dead_letter WHERE id = ANY($1::bigint[])", list(ids)
                )
            }
            moved = await conn.fetch(REQUEUE_SQL, list(ids))
        if moved:
            await conn.execute("SELECT pg_notify($1, '')", OUTBOX_NOTIFY_CHANNEL)  # after the commit
        return [(old[r["event_id"]], r["id"], r["event_id"]) for r in moved]
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.dead_letter",
        description="List or re-queue the outbox rows a service's relay moved to its dead_letter table (rows the "
        "broker can never take: too large, not encodable, an invalid topic). The database is the service's "
        "<SERVICE>_DATABASE_URL (or --database-url). See docs/operations.md.",
    )
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--database-url", help="the service's database (default: <SERVICE>_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the dead letters, oldest first, one JSON object a line")
    listing.add_argument("--limit", type=int, default=100)
    again = commands.add_parser("requeue", help="move dead letters back to the outbox (published again)")
    again.add_argument("ids", nargs="+", type=int, help="dead_letter ids (the `id` that `list` shows)")
    args = parser.parse_args(argv)
    dsn = asyncpg_dsn(args.database_url or database_url(args.service))
    try:
        if args.command == "list":
            for row in asyncio.run(list_rows(dsn, args.limit)):
                print(json.dumps(row, default=str))
            return 0
        moved = asyncio.run(requeue(dsn, args.ids))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"python -m shared.dead_letter: {exc}", file=sys.stderr)
        return 1
    for dead_id, outbox_id, event_id in moved:
        print(f"re-queued dead letter {dead_id} (event {event_id}) as outbox row {outbox_id}")
    missing = sorted(set(args.ids) - {m[0] for m in moved})
    if missing:
        print(f"not in dead_letter: {', '.join(map(str, missing))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
