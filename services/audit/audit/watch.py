"""Audit's own gauges for the pipeline's watch (`shared.watch`), from the database, so every replica reports the same
numbers: the open flags by severity (an index-only count on `ix_flags_status_severity`), and the webhook deliveries
still to make with the age of the oldest (the live ones, on the partial index `ix_deliveries_due`)."""

from __future__ import annotations

import asyncpg
from prometheus_client import Gauge

from audit.rules import Severity

OPEN_FLAGS = Gauge("audit_open_flags", "Open flags by severity (all of them, from the database)", ["severity"])

OPEN_FLAGS_SQL = "SELECT severity, count(*) AS n FROM flags WHERE status = 'open' GROUP BY severity"


async def open_flags(conn: asyncpg.Connection) -> None:
    found = {r["severity"]: r["n"] for r in await conn.fetch(OPEN_FLAGS_SQL, timeout=10)}
    for severity in Severity:
        OPEN_FLAGS.labels(severity.value).set(found.get(severity.value, 0))


WEBHOOK_LIVE = Gauge("audit_webhook_deliveries_waiting", "Webhook deliveries not made yet (pending or being sent)")
WEBHOOK_OLDEST = Gauge(
    "audit_webhook_oldest_waiting_seconds", "How long the oldest webhook delivery not made yet has waited (0: none)"
)

WEBHOOKS_SQL = """
SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age
FROM webhooks.deliveries WHERE status IN ('pending', 'sending')
"""


async def webhook_deliveries(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow(WEBHOOKS_SQL, timeout=10)
    assert row is not None
    WEBHOOK_LIVE.set(row["n"])
    WEBHOOK_OLDEST.set(row["age"])
