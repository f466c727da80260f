"""`shared.visibility`, the one place that says who may see a lot or a flag: its SQL and its Python say the same
thing, on real PostgreSQL (a migrated audit database: `flags`, `lot_holders`, the transformations' lots)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared.visibility import (
    WITHHELD_TEXT,
    Party,
    flag_parties,
    flag_visible_sql,
    grant_lots_sql,
    grant_opens,
    grant_opens_lot_sql,
    lot_visible_sql,
    named_in_flag,
    officer_flag_sql,
    relation_to,
    sees_custody_event,
    sees_flag,
    strings_in,
    withhold_flag,
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


@pytest.mark.asyncio(loop_scope="session")
async def test_a_regulators_grant_opens_its_lots_its_participants_lots_and_their_upstream(
    conn: asyncpg.Connection,
) -> None:
    """Issue 24: G0 -> TG1 -> G1 -> TG2 -> G2 (G1 held by `gtrader`, G2 by `gmaker`), G9 elsewhere (held by
    `gother`). A grant opens its lots and what its participants hold or held, and their upstream (never what was made
    from them); the list (`grant_lots_sql`), the one-lot question (`grant_opens_lot_sql`) and `grant_opens` agree."""
    links = (("TG1", "G0", "G1"), ("TG2", "G1", "G2"))
    holders = {("G1", "gtrader"), ("G2", "gmaker"), ("G9", "gother")}
    for tid, src, dst in links:
        await conn.execute(
            "INSERT INTO transformation_inputs (transformation_id, lot_id, position) VALUES ($1, $2, 0)", tid, src
        )
        await conn.execute(
            "INSERT INTO transformation_outputs (transformation_id, lot_id, position) VALUES ($1, $2, 0)", tid, dst
        )
    await conn.executemany("INSERT INTO lot_holders (lot_id, participant_id) VALUES ($1, $2)", sorted(holders))
    lots = ("G0", "G1", "G2", "G9")
    down = {"G0": ["G0", "G1", "G2"], "G1": ["G1", "G2"], "G2": ["G2"], "G9": ["G9"]}  # each lot and what it made
    try:
        grants = (
            ((), ()),
            (("G1",), ()),
            (("G2",), ()),
            ((), ("gtrader",)),
            ((), ("gmaker",)),
            (("G9",), ("gtrader",)),
            (("NOPE",), ("nobody",)),
        )
        for (g_lots, g_parts), depth in itertools.product(grants, (0, 1, 100)):
            listed = {
                r["lot_id"]
                for r in await conn.fetch(grant_lots_sql("$1", "$2", "$3"), list(g_lots), list(g_parts), depth)
            }
            for lot in lots:
                reached = down[lot][: depth + 1]
                expected = grant_opens(g_lots, g_parts, reached, [p for (x, p) in holders if x in reached])
                one = await conn.fetchval(
                    grant_opens_lot_sql("$1", "$2", "$3", "$4"), lot, list(g_lots), list(g_parts), depth
                )
                assert (lot in listed) == one == expected, (g_lots, g_parts, depth, lot)
        opened = await conn.fetch(grant_lots_sql("$1", "$2", "$3"), ["G1"], [], 100)
        assert {r["lot_id"] for r in opened} == {"G0", "G1"}  # the lot and its upstream, not what was made from it
        opened = await conn.fetch(grant_lots_sql("$1", "$2", "$3"), [], ["gmaker"], 100)
        assert {r["lot_id"] for r in opened} == {"G0", "G1", "G2"}  # what it holds and all its upstream
        opened = await conn.fetch(grant_lots_sql("$1", "$2", "$3"), [], ["gmaker"], 1)
        assert {r["lot_id"] for r in opened} == {"G1", "G2"}  # ... within the depth
    finally:
        await conn.execute("DELETE FROM lot_holders WHERE lot_id = ANY($1::text[])", list(lots))
        await conn.execute("DELETE FROM transformation_inputs WHERE transformation_id LIKE 'TG%'")
        await conn.execute("DELETE FROM transformation_outputs WHERE transformation_id LIKE 'TG%'")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_former_holder_sees_the_flags_on_events_up_to_its_hand_off(conn: asyncpg.Connection) -> None:
    """Issue 24: H0 -> TH (day 12) -> H1. `hmine` let go of H0 on day 10 (its buyer's receipt), `hsmelter` holds H0
    and made H1 of it on day 12, `hbuyer` held H1 until day 20. A flag on a lot reaches a holder only if the event it
    is about came no later than the lot's cutoff: the holder's hand-off, and for a lot upstream the transformation
    that drew it into the holder's material (`flag_reach_sql`); the SQL and `sees_flag` (given the lots that count)
    agree."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    for table, lot in (("transformation_inputs", "H0"), ("transformation_outputs", "H1")):
        await conn.execute(f"INSERT INTO {table} (transformation_id, lot_id, position) VALUES ('TH', '{lot}', 0)")
    await conn.execute(
        "INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, "
        "recorded_at) VALUES ('TH', 'smelting', 'hsmelter', 'smelter', $1, ARRAY['H1'], 'e-TH', $1)",
        t0 + timedelta(days=12),
    )
    holders = [("H0", "hmine", 10), ("H0", "hsmelter", None), ("H1", "hsmelter", None), ("H1", "hbuyer", 20)]
    await conn.executemany(
        "INSERT INTO lot_holders (lot_id, participant_id, until) VALUES ($1, $2, $3)",
        [(lot, p, None if d is None else t0 + timedelta(days=d)) for lot, p, d in holders],
    )
    inf = 10**6
    # (holder, lot) -> the last day a flag's event may be on to reach it
    cutoff = {("hmine", "H0"): 10, ("hsmelter", "H0"): inf, ("hsmelter", "H1"): inf, ("hbuyer", "H1"): 20}
    cutoff[("hbuyer", "H0")] = 12  # upstream of what it held: up to the smelting that drew H0 into H1
    try:
        sql = (
            f"SELECT {flag_visible_sql('$1', '100', '$4::timestamptz')} "
            "FROM (SELECT $2::text[] AS participants, $3::text[] AS lot_ids) AS flags"
        )
        for who, lots, day in itertools.product(
            ("hmine", "hsmelter", "hbuyer", "hstranger"), (["H0"], ["H1"], ["H0", "H1"]), (5, 10, 12, 15, 25)
        ):
            at = t0 + timedelta(days=day)
            counted = [lot for lot in lots if cutoff.get((who, lot), -1) >= day]
            assert await conn.fetchval(sql, who, [], lots, at) == sees_flag(who, [], lots, counted), (who, lots, day)
        at = t0 + timedelta(days=15)
        assert not await conn.fetchval(sql, "hmine", [], ["H0"], at)  # after the mine let go
        assert await conn.fetchval(sql, "hmine", ["hmine"], ["H0"], at)  # ... unless it names the mine
        assert await conn.fetchval(sql, "hbuyer", [], ["H0"], t0 + timedelta(days=12))  # fed its material
        assert not await conn.fetchval(sql, "hbuyer", [], ["H0"], at)  # H0's later events do not flow into H1
        assert await conn.fetchval(sql, "hbuyer", [], ["H1"], at)  # H1 until it let go on day 20
        assert not await conn.fetchval(sql, "hbuyer", [], ["H1"], t0 + timedelta(days=25))
        assert await conn.fetchval(sql, "hsmelter", [], ["H0"], t0 + timedelta(days=25))  # it holds H0 now
        assert await conn.fetchval(sql, "hmine", [], ["H0"], None)  # the event's time unknown: as early as can be
    finally:
        await conn.execute("DELETE FROM lot_holders WHERE lot_id IN ('H0', 'H1')")
        await conn.execute("DELETE FROM transformations WHERE transformation_id = 'TH'")
        await conn.execute("DELETE FROM transformation_inputs WHERE transformation_id = 'TH'")
        await conn.execute("DELETE FROM transformation_outputs WHERE transformation_id = 'TH'")


def test_a_participant_reads_a_flags_parties_as_their_policies_and_its_relation_to_them_allow() -> None:
    """Issue 24: `withhold_flag` (and `flag_parties`): the parties and the participants the evidence names, null and
    listed in `withheld` where `identity_disclosed` says no; inside texts a withheld id reads `WITHHELD_TEXT`."""
    flag = {
        "participants": ["mine", "trader"],
        "summary": "Received 900 kg from trader; mine's bag",
        "cause": "mine:irma:L1",
        "evidence_history": [{"summary": "mine then", "evidence": {"mine": "mine"}, "replaced_at": "2026-03-01"}],
        "evidence": {"sender": "trader", "by": ["smelter", "x"], "cleared_by": {"participant": "mine"}, "kg": 9},
    }
    parties = {
        "mine": Party("mine", "counterparties"),
        "trader": Party("trader", None, counterparty=True),
        "smelter": Party("smelter", "operator"),  # public by nature, whatever it chose
    }
    # a buyer downstream of the mine, the trader's direct counterparty
    shown = withhold_flag(flag, "buyer", {**parties, "mine": Party("mine", "counterparties", downstream=True)})
    assert shown["participants"] == [None, "trader"]
    assert shown["withheld"] == [
        "participants[0]",
        "evidence.cleared_by.participant",
        "evidence_history[0].evidence.mine",
    ]
    assert shown["cause"] == f"{WITHHELD_TEXT}:irma:L1"
    assert shown["evidence_history"] == [
        {"summary": f"{WITHHELD_TEXT} then", "evidence": {"mine": None}, "replaced_at": "2026-03-01"}
    ]
    assert shown["evidence"] == {
        "sender": "trader",
        "by": ["smelter", "x"],
        "cleared_by": {"participant": None},
        "kg": 9,
    }
    assert shown["summary"] == f"Received 900 kg from trader; {WITHHELD_TEXT}'s bag"
    # the mine's policy lets everyone downstream know it
    shown = withhold_flag(flag, "buyer", {**parties, "mine": Party("mine", "downstream", downstream=True)})
    assert (shown["participants"], shown["withheld"]) == (["mine", "trader"], [])
    # a party of the flag sees the other party (the same event), whatever its policy
    shown = withhold_flag(flag, "mine", {**parties, "trader": Party("trader", "operator")})
    assert (shown["participants"], shown["withheld"]) == (["mine", "trader"], [])
    # a stranger to everyone: only the public smelter
    shown = withhold_flag(flag, "stranger", {**parties, "trader": Party("trader", None)})
    assert shown["participants"] == [None, None] and shown["evidence"]["by"] == ["smelter", "x"]
    assert flag["participants"] == ["mine", "trader"]  # the flag itself unchanged
    # the operator, an officer, a regulator: everything
    assert withhold_flag(flag, None, parties) == {**flag, "withheld": []}
    assert flag_parties(["mine", "trader"], None) == ["mine", "trader"]
    assert flag_parties(["mine", "trader"], "buyer", parties) == [None, "trader"]
    assert relation_to("a", "a", same_event=False) == "self"
    assert relation_to("a", "b", same_event=False, counterparty=True, downstream=True) == "counterparty"
    assert strings_in({"a": ["b", {"c": "d"}, 3], "e": None}) == {"b", "d"}
