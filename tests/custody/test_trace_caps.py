"""A trace holds at most `TRACE_MAX_LOTS` lots and `TRACE_MAX_EDGES` edges, and says where and why it stopped; the
database never builds the n x m rows of a wide transformation (issue 22, section 1: every size has a bound checked
before the work is done).

Two chained 200 x 200 transformations (a lot split into 200, the 200 made into 200 others, those merged into one):
a trace through both would hold 40,000 edges of the second alone. Here the limits are 450 lots and 1,000 edges."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from audit import repository as audit_repository
from custody import repository
from custody.config import Settings
from custody.main import create_app
from custody.schemas import Trace
from shared.genealogy import edge_depth, walk_sql
from tests.conftest import OPERATOR, registry_process, serve_in_process
from tests.custody.conftest import Party, Stack
from tests.custody.test_transformations import declare, ok, transform

MAX_LOTS, MAX_EDGES, N = 450, 1000, 200


@pytest.fixture(scope="module")
async def capped(database_urls: dict[str, str]) -> AsyncIterator[Stack]:
    async with registry_process(database_urls, "custody") as reg:
        settings = Settings(
            database_url=database_urls["custody"],
            consumer_group=f"custody-{uuid.uuid4().hex[:6]}",
            trace_max_lots=MAX_LOTS,
            trace_max_edges=MAX_EDGES,
            **reg.common,
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(create_app(settings)) as custody,
        ):
            yield Stack(registry, custody, database_urls["custody"].replace("+asyncpg", ""), reg.prefix)


@pytest.fixture(scope="module")
async def chain(capped: Stack) -> dict[str, Any]:
    """L0 -> T1 -> A[200] -> T2 -> B[200] -> T3 -> C, all by one smelter."""
    smelter = await capped.party("smelter", "MY")
    l0 = await declare(capped, smelter, mass=100_000)
    a = [o["lot_id"] for o in (await transform(capped, smelter, [(l0, 100_000)], [400] * N))["outputs"]]
    b = [o["lot_id"] for o in (await transform(capped, smelter, [(x, 400) for x in a], [350] * N))["outputs"]]
    c = (await transform(capped, smelter, [(x, 350) for x in b], [60_000]))["outputs"][0]["lot_id"]
    return {"smelter": smelter, "l0": l0, "a": a, "b": b, "c": c}


async def trace(stack: Stack, who: Party | None, lot: str, direction: str) -> dict[str, Any]:
    auth = OPERATOR if who is None else who.auth
    body = await ok(await stack.custody.get(f"/lots/{lot}/trace?direction={direction}", headers=auth), 200)
    Trace.model_validate(body)  # the documented shape, `truncated` included
    return body


@pytest.mark.asyncio(loop_scope="session")
async def test_a_trace_through_two_wide_transformations_stops_at_the_edge_limit_and_says_so(
    capped: Stack, chain: dict[str, Any]
) -> None:
    # Downstream from L0: 200 edges at depth 1, then 40,000 at depth 2: the trace stops at depth 1.
    for who in (None, chain["smelter"]):
        down = await trace(capped, who, chain["l0"], "downstream")
        assert len(down["edges"]) == N <= MAX_EDGES
        assert {n["lot_id"] for n in down["nodes"]} == {chain["l0"], *chain["a"]}
        assert down["truncated"] == {
            "reason": "max_edges",
            "max_edges": MAX_EDGES,
            "max_depth": 1,
            "at_lots": sorted(chain["a"]),
        }
    # Upstream from C: 200 edges at depth 1 (T3), then 40,000 (T2): the same.
    up = await trace(capped, chain["smelter"], chain["c"], "upstream")
    assert len(up["edges"]) == N and {e["child"] for e in up["edges"]} == {chain["c"]}
    assert up["truncated"] == {
        "reason": "max_edges",
        "max_edges": MAX_EDGES,
        "max_depth": 1,
        "at_lots": sorted(chain["b"]),
    }
    # From a lot of the middle, the trace is whole: 1 x 200 and 200 x 1 edges.
    whole = await trace(capped, chain["smelter"], chain["b"][0], "upstream")
    assert whole["truncated"] is None and len(whole["edges"]) == 2 * N and len(whole["nodes"]) == 2 + N


@pytest.mark.asyncio(loop_scope="session")
async def test_a_trace_stops_before_the_step_that_would_pass_the_lot_limit(capped: Stack) -> None:
    smelter = await capped.party("smelter", "MY")
    lot = await declare(capped, smelter, mass=1000)
    await transform(capped, smelter, [(lot, 1000)], [1] * (MAX_LOTS + 50))
    down = await trace(capped, smelter, lot, "downstream")
    assert [n["lot_id"] for n in down["nodes"]] == [lot] and down["edges"] == []
    assert down["truncated"] == {"reason": "max_lots", "max_lots": MAX_LOTS, "max_depth": 0, "at_lots": [lot]}


def plan_rows(plan: dict[str, Any]) -> int:
    """The most rows any node of an EXPLAIN ANALYZE plan produced (over all its loops)."""
    own = int(plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1))
    return max([own, *(plan_rows(p) for p in plan.get("Plans", ()))])


async def explain(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    out = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    return plan_rows((orjson.loads(out) if isinstance(out, str) else out)[0]["Plan"])


@pytest.mark.asyncio(loop_scope="session")
async def test_the_database_never_builds_the_n_times_m_rows(capped: Stack, chain: dict[str, Any]) -> None:
    conn = await asyncpg.connect(capped.custody_dsn)
    try:
        # The bare walk goes through each transformation once: a few rows a lot (a lot-to-lot join: 40,000)
        walk = walk_sql(upstream=False) + "SELECT lot_id, depth FROM reached"
        assert await explain(conn, walk, chain["l0"], 100) < 5 * N
        # The trace statement whose edges would be 40,200: it builds none of them, and answers counts instead ...
        args = (chain["l0"], 100, None, MAX_LOTS, MAX_EDGES, 100)
        assert await explain(conn, repository.TRACE_DOWN_ROWS, *args) < 5 * N
        rows = await repository.trace_rows(
            conn, chain["l0"], upstream=False, max_depth=100, max_lots=MAX_LOTS, max_edges=MAX_EDGES, participant=None
        )
        assert rows and all(r["edge"] is None for r in rows) and len(rows) == 6  # (T1, T2, T3) x (in, out)
        counts = [(r["transformation_id"], r["parent"] == "in", r["depth"], int(r["mass_kg"])) for r in rows]
        assert edge_depth(counts, MAX_EDGES, 100) == 1
        # ... and at the depth they give, what it returns is within both limits.
        rows = await repository.trace_rows(
            conn, chain["l0"], upstream=False, max_depth=1, max_lots=MAX_LOTS, max_edges=MAX_EDGES, participant=None
        )
        assert sum(1 for r in rows if r["edge"]) == N and sum(1 for r in rows if r["edge"] is False) == N + 1
        # Audit's risk summary walks the same tables the same way, and stops at its lot limit.
        lots, cut, at = await audit_repository.upstream(conn, chain["c"], 100, 300)
        assert at == 1 and len(lots) == N + 1 and cut == sorted(chain["b"])
        lots, cut, at = await audit_repository.upstream(conn, chain["c"], 100, MAX_LOTS)
        assert at is None and len(lots) == 2 * N + 2 and cut == []
    finally:
        await conn.close()


def test_edge_depth_counts_pairs_within_each_depth() -> None:
    # T: 2 inputs at depth 1, 3 outputs at depth 2 -> 6 edges at depth 2; U: 1 x 1 at depth 0/1 -> 1 edge at 1
    counts = [("T", True, 1, 2), ("T", False, 2, 3), ("U", True, 0, 1), ("U", False, 1, 1)]
    assert edge_depth(counts, 7, 5) == 5
    assert edge_depth(counts, 6, 5) == 1
    assert edge_depth(counts, 0, 5) == 0
