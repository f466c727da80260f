"""Audit's own gauges for the pipeline's watch (`shared.watch`): the open flags by severity, from the database (an
index-only count on `ix_flags_status_severity`), so every replica reports the same numbers."""

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
