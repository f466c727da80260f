"""The two migrations that store a transformation once move the n x m genealogy rows there and back (issue 22): a
2 x 3 transformation written the old way (custody: its lists as JSONB and 6 edges; audit: 6 edges and its outputs)
becomes 2 + 3 rows in each service, and a downgrade gives the edges (and custody's lists) back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from alembic import command
from alembic.config import Config

from tests.conftest import ROOT, _admin, pg_url

BEFORE = {"custody": "c0570d100001", "audit": "a7d1e0000001"}
AFTER = {"custody": "c0570d100002", "audit": "a7d1e0000002"}
INPUTS, OUTPUTS = ["IN-A", "IN-B"], ["OUT-1", "OUT-2", "OUT-3"]


def _config(service: str, url: str) -> Config:
    cfg = Config(str(Path(ROOT) / "services" / service / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


@pytest.fixture
async def database(infra: None) -> AsyncIterator[str]:
    name = f"trf_migration_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def edges(conn: asyncpg.Connection) -> set[tuple[str, str, str]]:
    rows = await conn.fetch("SELECT parent, child, transformation_id FROM genealogy")
    return {(r[0], r[1], r[2]) for r in rows}


async def lots_of(conn: asyncpg.Connection, table: str) -> list[str]:
    return [
        r[0] for r in await conn.fetch(f"SELECT lot_id FROM {table} WHERE transformation_id = 'T1' ORDER BY position")
    ]


@pytest.mark.asyncio(loop_scope="session")
async def test_custody_moves_the_edges_to_n_plus_m_rows_and_back(database: str) -> None:
    url = pg_url(database)
    await asyncio.to_thread(command.upgrade, _config("custody", url), BEFORE["custody"])
    conn = await asyncpg.connect(pg_url(database, "postgresql"))
    try:
        for lot in INPUTS + OUTPUTS:
            await conn.execute(
                "INSERT INTO lots (lot_id, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind, "
                "head_hash, event_count) VALUES ($1, 'tin', 'ore', 10, 0, 'active', 's', 'external', '\\x00', 0)",
                lot,
            )
        inputs = [{"lot_id": lot, "mineral": "tin", "form": "ore", "mass_kg": "4.000"} for lot in INPUTS]
        outputs = [{"lot_id": lot, "mineral": "tin", "form": "ore", "mass_kg": "10.000"} for lot in OUTPUTS]
        await conn.execute(
            "INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, inputs, outputs) "
            "VALUES ('T1', 'merge', 's', 'smelter', now(), $1::jsonb, $2::jsonb)",
            orjson.dumps(inputs).decode(),
            orjson.dumps(outputs).decode(),
        )
        await conn.executemany(
            "INSERT INTO genealogy (parent, child, transformation_id, mass_kg) VALUES ($1, $2, 'T1', 4)",
            [(i, o) for i in INPUTS for o in OUTPUTS],
        )
        old = await edges(conn)
        await asyncio.to_thread(command.upgrade, _config("custody", url), AFTER["custody"])
        assert await lots_of(conn, "transformation_inputs") == INPUTS
        assert await lots_of(conn, "transformation_outputs") == OUTPUTS
        assert await conn.fetchval("SELECT sum(mass_kg) FROM transformation_inputs") == 8
        assert await conn.fetchval("SELECT to_regclass('genealogy')") is None
        await asyncio.to_thread(command.downgrade, _config("custody", url), BEFORE["custody"])
        assert await edges(conn) == old
        back = orjson.loads(await conn.fetchval("SELECT inputs::text FROM transformations"))
        assert [(i["lot_id"], i["mass_kg"]) for i in back] == [(lot, "4.000") for lot in INPUTS]
    finally:
        await conn.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_audit_moves_the_edges_to_n_plus_m_rows_and_back(database: str) -> None:
    url = pg_url(database)
    await asyncio.to_thread(command.upgrade, _config("audit", url), BEFORE["audit"])
    conn = await asyncpg.connect(pg_url(database, "postgresql"))
    try:
        await conn.execute(
            "INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, "
            "recorded_at) VALUES ('T1', 'merge', 's', 'smelter', now(), $1, 'e1', now())",
            OUTPUTS,
        )
        await conn.executemany(
            "INSERT INTO genealogy (parent, child, transformation_id) VALUES ($1, $2, 'T1')",
            [(i, o) for i in INPUTS for o in OUTPUTS],
        )
        old = await edges(conn)
        await asyncio.to_thread(command.upgrade, _config("audit", url), AFTER["audit"])
        assert await lots_of(conn, "transformation_inputs") == INPUTS
        assert await lots_of(conn, "transformation_outputs") == OUTPUTS
        assert await conn.fetchval("SELECT to_regclass('genealogy')") is None
        await asyncio.to_thread(command.downgrade, _config("audit", url), BEFORE["audit"])
        assert await edges(conn) == old
    finally:
        await conn.close()
