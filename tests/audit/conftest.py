"""The whole system on real infrastructure: the registry as a process, custody and audit in-process, all with
their relays and consumers, on topics of this module alone."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import httpx
import pytest

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.events import CloudEvent
from tests.conftest import FIXED_DATES_AGE_DAYS, _admin, _migrate, pg_url, registry_process, serve_in_process
from tests.custody.conftest import Stack

Events = list[tuple[str, CloudEvent]]


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of one statement on the database at `url`."""
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def count(url: str, table: str) -> int:
    return int((await fetch(url, f"SELECT count(*) AS n FROM {table}"))[0]["n"])


async def empty(*urls: str) -> None:
    """The projection's tables and the outbox emptied, and its head moved on (a state kept in memory is void)."""
    from audit.replay import TABLES

    for url in urls:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)}, outbox")
            await conn.execute("UPDATE projection_head SET version = version + 1, seq = 0")
        finally:
            await conn.close()


@asynccontextmanager
async def audit_databases(prefix: str, n: int = 2) -> AsyncIterator[list[str]]:
    """`n` fresh audit databases migrated with `alembic upgrade head`, as asyncpg URLs; dropped afterwards."""
    names = [f"{prefix}_{uuid.uuid4().hex[:8]}_{i}" for i in range(n)]
    for name in names:
        await _admin(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(_migrate, "audit", pg_url(name))
    try:
        yield [pg_url(name, "postgresql") for name in names]
    finally:
        for name in names:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_refused_value(stream: Events) -> tuple[Events, CloudEvent]:
    """`stream` with one more registration half way through, whose lot id is too long for an index entry: fine in
    memory, refused by PostgreSQL. Returns the stream and that event."""
    registered = [i for i, (_, e) in enumerate(stream) if e.type == "custody.lot.registered"]
    at = registered[len(registered) // 2]
    topic, e = stream[at]
    huge = "LOT-" + base64.b64encode(os.urandom(15_000)).decode()
    odd = replace(e, id=str(uuid.uuid4()), data={**e.data, "lot_id": huge})
    return [*stream[:at], (topic, odd), *stream[at:]], odd


@dataclass
class System(Stack):
    audit: httpx.AsyncClient = None  # type: ignore[assignment]
    audit_dsn: str = ""

    async def audit_rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.audit_dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def system(database_urls: dict[str, str]) -> AsyncIterator[System]:
    conn = await asyncpg.connect(database_urls["audit"].replace("+asyncpg", ""))
    try:
        await conn.execute(
            "TRUNCATE flags, lots, lot_holders, shipments, transformation_inputs, transformation_outputs, "
            "transformations, certifications, cahra_areas, participants, processed_events, received_events, outbox, "
            "flag_decisions, flag_evidence_history, risk_profiles, asm_presence, coexistence_agreements, "
            "declared_origins, grievances, grievance_contacts, grievance_triages"
        )
    finally:
        await conn.close()
    async with registry_process(database_urls, "audit") as reg:
        custody = custody_app(
            CustodySettings(
                database_url=database_urls["custody"], consumer_group=f"custody-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        audit = audit_app(
            AuditSettings(
                database_url=database_urls["audit"],
                overdue_check_s=0.5,
                overdue_grace_s=3.0,
                # The scenarios' lots carry fixed 2026 dates: no `backdated_origin` for them however late the suite
                # runs (tests/audit/test_judging.py judges that rule with recorded times of its own).
                max_origin_age_days=FIXED_DATES_AGE_DAYS,
                consumer_group=f"audit-{uuid.uuid4().hex[:6]}",
                **reg.common,
            )
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(audit) as a,
        ):
            yield System(
                registry,
                c,
                database_urls["custody"].replace("+asyncpg", ""),
                reg.prefix,
                audit=a,
                audit_dsn=database_urls["audit"].replace("+asyncpg", ""),
            )
