"""`shared.visibility`, the one place that says who may see a lot or a flag: its SQL and its Python say the same
thing, on real PostgreSQL (a migrated audit database: `flags`, `lot_holders`, the transformations' lots)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.visibility import (
    flag_visible_sql,
    lot_visible_sql,
    named_in_flag,
    officer_flag_sql,
    sees_custody_event,
    sees_flag,
)
from tests.audit.conftest import audit_databases

PEOPLE = ("mine", "trader", "smelter", "maker", "stranger")
# Who holds or held which lot: the mine held L1 and shipped it to the trader; the smelter made L2 of it.
HOLDERS = {("L1", "mine"), ("L1", "trader"), ("L1", "smelter"), ("L2", "smelter"), ("L3", "maker")}
LOT_SETS = (("L1",), ("L2",), ("L1", "L2"), ("L3",), ("L9",))
NAMED = ((), ("mine",), ("trader", "smelter"), ("stranger",))


@pytest.fixture(scope="module")
async def conn(infra: None) -> AsyncIterator[asyncpg.Connection]:
    async with audit_databases("visibility", n=1) as (url,):
        c = await asyncpg.connect(url)
        try:
            await c.executemany("INSERT INTO lot_holders (lot_id, participant_id) VALUES ($1, $2)", sorted(HOLDERS))
            yield c
        finally:
            await c.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_flag_is_seen_by_the_parties_it_names_and_by_holders_of_its_lots(conn: asyncpg.Connection) -> None:
    sql = f"SELECT {flag_visible_sql('$1')} FROM (SELECT $2::text[] AS participants, $3::text[] AS lot_ids) AS flags"
    checked = 0
    for who, named, lots in itertools.product(PEOPLE, NAMED, LOT_SETS):
        held = [lot for lot in lots if (lot, who) in HOLDERS]
        in_sql = await conn.fetchval(sql, who, list(named), list(lots))
        assert in_sql == sees_flag(who, named, lots, held), (who, named, lots)
        checked += 1
    assert checked == len(PEOPLE) * len(NAMED) * len(LOT_SETS)
    assert sees_flag("trader", ("mine",), ("L1",), ["L1"])  # a former holder of the lot
    assert sees_flag("stranger", ("stranger",), ("L9",), [])  # named, never held anything
    assert not sees_flag("stranger", ("mine",), ("L1",), [])


@pytest.mark.asyncio(loop_scope="session")
async def test_a_lot_is_seen_by_its_holders_and_by_holders_of_what_was_made_from_it(conn: asyncpg.Connection) -> None:
    for table, lot in (("transformation_inputs", "L0"), ("transformation_outputs", "L1")):  # L0 -> T0 -> L1
        await conn.execute(f"INSERT INTO {table} (transformation_id, lot_id, position) VALUES ('T0', '{lot}', 0)")
    try:
        sql = lot_visible_sql("$3")
        assert await conn.fetchval(sql, "L1", "trader", 100)  # held it
        assert await conn.fetchval(sql, "L0", "trader", 100)  # upstream of what it held
        assert not await conn.fetchval(sql, "L0", "trader", 0)  # ... beyond the depth allowed
        assert not await conn.fetchval(sql, "L0", "stranger", 100)
        assert not await conn.fetchval(sql, "L2", "trader", 100)  # made downstream of its lot, never held
    finally:
        await conn.execute("DELETE FROM transformation_inputs WHERE transformation_id = 'T0'")
        await conn.execute("DELETE FROM transformation_outputs WHERE transformation_id = 'T0'")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_flag_is_seen_by_holders_of_what_was_made_from_its_lots(conn: asyncpg.Connection) -> None:
    """Issue 22: a flag on ore is seen by whoever holds or held metal made from it (never the ore itself); an officer
    scoped to some participants oversees the flags naming them or on lots they hold or held."""
    for table, lot in (("transformation_inputs", "L3"), ("transformation_outputs", "L4")):  # L3 -> T1 -> L4
        await conn.execute(f"INSERT INTO {table} (transformation_id, lot_id, position) VALUES ('T1', '{lot}', 0)")
    await conn.execute("INSERT INTO lot_holders (lot_id, participant_id) VALUES ('L4', 'downstream')")
    try:
        sql = (
            f"SELECT {flag_visible_sql('$1', '$4')} "
            "FROM (SELECT $2::text[] AS participants, $3::text[] AS lot_ids) AS flags"
        )
        assert await conn.fetchval(sql, "downstream", ["mine"], ["L3"], 100)  # holds metal made of the flagged ore
        assert not await conn.fetchval(sql, "downstream", ["mine"], ["L3"], 0)  # ... beyond the depth allowed
        assert not await conn.fetchval(sql, "stranger", ["mine"], ["L3"], 100)
        officer = f"SELECT {officer_flag_sql('$1')} FROM (SELECT $2::text[] AS participants, $3::text[] AS lot_ids) f"
        assert await conn.fetchval(officer, ["maker"], ["mine"], ["L3"])  # the maker held L3
        assert await conn.fetchval(officer, ["mine"], ["mine"], ["L9"])  # named
        assert not await conn.fetchval(officer, ["stranger"], ["mine"], ["L3"])
    finally:
        await conn.execute("DELETE FROM lot_holders WHERE participant_id = 'downstream'")
        await conn.execute("DELETE FROM transformation_inputs WHERE transformation_id = 'T1'")
        await conn.execute("DELETE FROM transformation_outputs WHERE transformation_id = 'T1'")


def test_the_stream_shows_a_participant_its_own_custody_events_only() -> None:
    assert sees_custody_event("mine", "mine")
    assert not sees_custody_event("mine", "trader")
    assert not sees_custody_event("mine", None)
    assert named_in_flag("mine", ["mine", "trader"])
