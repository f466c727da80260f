"""`GET /flags/counts` (issue 28, "What operators see"): the flags a caller may see, counted in the database by
status, severity and rule, with `GET /flags`' filters and visibility, so the dashboard's overview is exact however
many flags there are.

Over 2,000 flags are written straight into audit's tables (flags and lot holders; no stream needed to count them):
- on a lot a participant holds now (2,150: it and an officer scoped to it see them all);
- on a lot another participant holds (300: neither sees them), 40 of them naming the participant (both see those);
  a regulator granted that lot sees these 300 and nothing else;
- on a lot the participant let go of before the lot's events were recorded (60: the officer sees them, the
  participant not: the flags are about events after its hand-off).
Each caller's counts are held to the numbers the design gives and to a tally of every page `GET /flags` gives it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from audit.service import tally
from tests.audit.conftest import System
from tests.conftest import OPERATOR, bearer
from tests.custody.conftest import Party

RULES = ("seal_mismatch", "mass_mismatch", "undocumented_custody", "uncertified_asm_in_cahra")
SEVERITIES = ("info", "low", "medium", "high", "critical")
STATUSES = ("open", "resolved", "withdrawn")
HANDED_OFF = datetime(2026, 3, 1, tzinfo=UTC)


def status_of(i: int) -> str:
    return "resolved" if i % 10 == 0 else "withdrawn" if i % 17 == 0 else "open"


def row_of(i: int) -> tuple[str, str, str]:
    """(status, severity, rule) of the i-th flag of a batch (the same formula as the SQL of `insert_flags`)."""
    return status_of(i), SEVERITIES[i % 5], RULES[i % 4]


INSERT_FLAGS = """
INSERT INTO flags (id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, status)
SELECT $1 || '-' || i, ($4::text[])[1 + i % 4], $1 || '-' || i, ($5::text[])[1 + i % 5], $2, ARRAY[$2],
       $3::text[], 'count test', '{}'::jsonb,
       CASE WHEN i % 10 = 0 THEN 'resolved' WHEN i % 17 = 0 THEN 'withdrawn' ELSE 'open' END
FROM generate_series(1, $6::int) AS i
"""

LOT = """
INSERT INTO lots (lot_id, mineral, form, mass_kg, origin_kind, custodian, origin_event, origin_at, recorded_at,
                  last_custody_at)
VALUES ($1, 'tin', 'ore', 1000, 'mine', $2, 'ev-' || $1, $3, $3, $3)
"""


class World:
    mine: Party  # holds lot A; held lot C until HANDED_OFF (C's events were recorded after that)
    other: Party  # holds lot B
    officer: dict[str, str]  # scoped to `mine`
    regulator: dict[str, str]  # granted lot B
    lots: dict[str, str]
    expected: dict[str, Counter[tuple[str, str, str]]]  # who -> (status, severity, rule) -> count
    on_a: Counter[tuple[str, str, str]]  # the flags on lot A


async def insert_flags(
    conn: asyncpg.Connection, tag: str, lot: str, participants: list[str], n: int
) -> Counter[tuple[str, str, str]]:
    await conn.execute(INSERT_FLAGS, tag, lot, participants, list(RULES), list(SEVERITIES), n)
    return Counter(row_of(i) for i in range(1, n + 1))


@pytest.fixture(scope="module")
async def world(system: System) -> World:
    s, w = system, World()
    w.mine = await s.party("trader", "CD")
    w.other = await s.party("trader", "RW")
    r = await s.registry.post("/officers", headers=OPERATOR, json={"name": "O", "contact": "o", "scope": [w.mine.id]})
    assert r.status_code == 201, r.text
    w.officer = bearer(r.json()["credential"]["token"])
    run = uuid.uuid4().hex[:8]
    w.lots = {k: f"CNT-{run}-{k}" for k in "ABC"}
    conn = await asyncpg.connect(s.audit_dsn)
    try:
        async with conn.transaction():
            await conn.execute(LOT, w.lots["C"], w.other.id, datetime(2026, 3, 5, tzinfo=UTC))
            await conn.executemany(
                "INSERT INTO lot_holders (lot_id, participant_id, until) VALUES ($1, $2, $3)",
                [
                    (w.lots["A"], w.mine.id, None),
                    (w.lots["B"], w.other.id, None),
                    (w.lots["C"], w.mine.id, HANDED_OFF),
                    (w.lots["C"], w.other.id, None),
                ],
            )
            held = await insert_flags(conn, f"{run}-A", w.lots["A"], [], 2150)
            others = await insert_flags(conn, f"{run}-B", w.lots["B"], [w.other.id], 260)
            named = await insert_flags(conn, f"{run}-N", w.lots["B"], [w.other.id, w.mine.id], 40)
            after = await insert_flags(conn, f"{run}-C", w.lots["C"], [], 60)
    finally:
        await conn.close()
    w.on_a = held
    body = {"name": f"Authority {run}", "authority": "Reg. 2017/821", "country": "DE"}
    r = await s.registry.post("/regulators", headers=OPERATOR, json=body)
    assert r.status_code == 201, r.text
    now = datetime.now(UTC)
    grant = {
        "lots": [w.lots["B"]],
        "participants": [],
        "valid_from": (now - timedelta(minutes=1)).isoformat(),
        "valid_until": (now + timedelta(days=1)).isoformat(),
        "reason": "counts test",
    }
    r = await s.registry.post(f"/regulators/{r.json()['id']}/grants", headers=OPERATOR, json=grant)
    assert r.status_code == 201, r.text
    w.regulator = bearer(r.json()["credential"]["token"])
    w.expected = {
        "mine": held + named,
        "officer": held + named + after,
        "regulator": others + named,
        "operator": held + others + named + after,
    }
    return w


def expected_counts(c: Counter[tuple[str, str, str]], **where: str) -> dict[str, Any]:
    """What the endpoint must answer for these flags and filters (no `status`: withdrawn ones are not counted)."""
    kept = {
        k: n
        for k, n in c.items()
        if (k[0] != "withdrawn" if "status" not in where else k[0] == where["status"])
        and k[1] == where.get("severity", k[1])
        and k[2] == where.get("rule", k[2])
    }
    return tally((st, sev, rule, n) for (st, sev, rule), n in kept.items()).model_dump(mode="json")


async def counts(s: System, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await s.audit.get("/flags/counts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Counter[tuple[str, str, str]]:
    """Every flag `GET /flags` pages through for this caller, tallied."""
    out: Counter[tuple[str, str, str]] = Counter()
    cursor = None
    while True:
        paging = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/flags", params={**params, **paging}, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        out.update((f["status"], f["severity"], f["rule"]) for f in page["items"])
        if not (cursor := page["next_cursor"]):
            return out


def callers(w: World) -> dict[str, dict[str, str]]:
    return {"mine": w.mine.auth, "officer": w.officer, "regulator": w.regulator, "operator": OPERATOR}


async def test_each_caller_counts_exactly_the_flags_it_may_see_beyond_two_thousand(
    system: System, world: World
) -> None:
    for name, headers in callers(world).items():
        got = await counts(system, headers)
        assert got == expected_counts(world.expected[name]), name
        assert got["total"] > (200 if name == "regulator" else 2000), name
        # the same flags `GET /flags` pages through (its visibility, not a second copy of it)
        assert tally((*k, n) for k, n in (await listed(system.audit, headers)).items()).model_dump(mode="json") == got
    mine = await counts(system, world.mine.auth)
    everything = await counts(system, OPERATOR)
    assert mine["open"] < everything["open"]
    assert [c["severity"] for c in mine["by_severity"]] == ["critical", "high", "medium", "low", "info"]


async def test_withdrawn_flags_are_counted_only_when_asked_for(system: System, world: World) -> None:
    for name, headers in callers(world).items():
        default = await counts(system, headers)
        assert default["withdrawn"] == 0
        withdrawn = await counts(system, headers, status="withdrawn")
        assert withdrawn == expected_counts(world.expected[name], status="withdrawn"), name
        assert withdrawn["withdrawn"] == withdrawn["total"] > 0
        assert withdrawn["open"] == withdrawn["resolved"] == 0


async def test_the_filters_of_get_flags_narrow_the_counts(system: System, world: World) -> None:
    s, w = system, world
    for name, headers in callers(w).items():
        for where in ({"status": "open"}, {"severity": "high"}, {"rule": "seal_mismatch", "status": "resolved"}):
            assert await counts(s, headers, **where) == expected_counts(w.expected[name], **where), (name, where)
            got = await listed(s.audit, headers, **where)
            assert (await counts(s, headers, **where))["total"] == sum(got.values()), (name, where)
    for headers in (OPERATOR, w.mine.auth, w.officer):
        assert await counts(s, headers, lot_id=w.lots["A"]) == expected_counts(w.on_a)
    assert (await counts(s, w.mine.auth, lot_id=w.lots["C"]))["total"] == 0  # after its hand-off: not its flags
    assert (await counts(s, w.regulator, lot_id=w.lots["A"]))["total"] == 0  # not granted
    assert (await counts(s, w.officer, lot_id=w.lots["C"]))["total"] > 0
    # a participant counts the flags that name it, and cannot probe who else a flag names
    named = await counts(s, w.mine.auth, participant=w.mine.id)
    assert named["total"] == sum(n for k, n in Counter(row_of(i) for i in range(1, 41)).items() if k[0] != "withdrawn")
    r = await s.audit.get("/flags/counts", params={"participant": w.other.id}, headers=w.mine.auth)
    assert r.status_code == 403, r.text
    assert (await counts(s, OPERATOR, lot_id="no-such-lot"))["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"status": "closed"},
        {"severity": "catastrophic"},
        {"rule": "no_such_rule"},
        {"lot_id": "A\x00B"},
        {"participant": "x\x00"},
        {"lot_id": "L" * 201},
        {"participant": "p" * 201},
    ],
)
async def test_hostile_input_is_refused_with_a_problem(system: System, params: dict[str, str]) -> None:
    r = await system.audit.get("/flags/counts", params=params, headers=OPERATOR)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_no_token_no_counts(system: System) -> None:
    assert (await system.audit.get("/flags/counts")).status_code == 401


def test_the_tally_orders_severities_and_rules_and_adds_up() -> None:
    got = tally(
        [
            ("open", "low", "seal_mismatch", 5),
            ("resolved", "critical", "seal_mismatch", 1),
            ("open", "high", "mass_mismatch", 7),
            ("open", "high", "undocumented_custody", 9),
            ("withdrawn", "info", "undocumented_custody", 2),
        ]
    )
    assert (got.open, got.resolved, got.withdrawn, got.total) == (21, 1, 2, 24)
    assert [(c.severity.value, c.open, c.total) for c in got.by_severity] == [
        ("critical", 0, 1),
        ("high", 16, 16),
        ("medium", 0, 0),
        ("low", 5, 5),
        ("info", 0, 2),
    ]
    # the highest severity first (a rule's highest among its flags), then the most open, then by name
    assert [(r.rule.value, r.severity.value, r.open) for r in got.by_rule] == [
        ("seal_mismatch", "critical", 5),
        ("undocumented_custody", "high", 9),
        ("mass_mismatch", "high", 7),
    ]
    assert tally([]).total == 0 and tally([]).by_rule == []
