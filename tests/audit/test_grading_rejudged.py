"""Graded flags re-judged in the database (issue 23, H1): reference data known before a custody event but delivered
after it re-judges the flag's severity too (an IRMA 75 level makes an industrial mine's origin in a CAHRA medium),
announced with `previous_severity`; a trader's smelting of ore into metal is screened as a smelting again after the
projection reloads its state from the tables (the forms come from the event kept in received_events), so a later
RMAP Conformant certification withdraws its Active flag there too. Live and in order (registry first) agree on every
flag that is not withdrawn. Without I/O: tests/audit/test_rules_grading.py."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest

from audit.projection import Projection
from audit.projection.flags import flag_id
from bench.audit_bench import Generator
from shared.topics import REGISTRY_EVENTS
from tests.audit.conftest import Events, audit_databases
from tests.audit.test_late_reference import apply_batches, fetch, flags, not_withdrawn, statuses, truncate, updates

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_grading") as (late, in_order):
        yield late, in_order


def registry_first(*parts: Events) -> Events:
    return sorted([e for p in parts for e in p], key=lambda te: te[0] != REGISTRY_EVENTS)  # stable


async def test_a_late_irma_75_re_judges_the_origin_flag_to_medium(dbs: tuple[str, str]) -> None:
    late_url, in_order_url = dbs
    await truncate(late_url, in_order_url)
    g = Generator(seed=231, target=0)
    mine = g.participant("mine", "CD", mining_type="lsm")
    g.cahra("CD", None, "2020-01-01")
    first = len(g.s.events)
    g.certify(mine, "irma", "irma_75", "2020-01-01")  # known before the lot, delivered after it
    late = g.s.events[first:]
    lot = g.register(mine, "tin", Decimal("1000"), g.tick(1))
    on_time = g.s.events[:first] + g.s.events[first + len(late) :]

    await apply_batches(late_url, Projection(), [on_time])
    key = ("origin_in_cahra", f"{lot.lot_id}:origin")
    before = await flags(late_url)
    assert before[key]["severity"] == "high"
    assert orjson.loads(before[key]["evidence"])["irma_level"] is None

    await apply_batches(late_url, Projection(), [late])
    after = await flags(late_url)
    assert after[key]["severity"] == "medium"  # the severity is re-judged with the evidence
    assert orjson.loads(after[key]["evidence"])["irma_level"] == "irma_75"
    [event] = await updates(late_url, flag_id(*key))
    assert (event.severity, event.previous_severity) == ("medium", "high")
    assert (await statuses(late_url))[("lsm_without_irma", f"{mine.id}:irma:{lot.lot_id}")] == "withdrawn"

    await apply_batches(in_order_url, Projection(), [registry_first(on_time, late)])
    assert (await flags(in_order_url))[key]["severity"] == "medium"
    assert await not_withdrawn(late_url) == await not_withdrawn(in_order_url)


def as_trader_processing(events: Events) -> Events:
    """The smelting events as a trader's `processing` of ore into metal (custody publishes `by_kind` and `kind`)."""
    out: Events = []
    for topic, e in events:
        if e.type in ("custody.transformation.recorded", "custody.lot.transformed"):
            e = dataclasses.replace(e, data={**e.data, "kind": "processing", "by_kind": "trader"})
        out.append((topic, e))
    return out


async def test_a_trader_s_smelting_reloaded_from_the_tables_is_still_screened(dbs: tuple[str, str]) -> None:
    late_url, in_order_url = dbs
    await truncate(late_url, in_order_url)
    g = Generator(seed=232, target=0)
    trader = g.participant("trader", "RW")
    mine = g.participant("mine", "RW", mining_type="lsm")
    g.certify(mine, "irma", "irma_50", "2020-01-01")
    g.certify(trader, "rmap", "active", "2020-01-01")
    lot = g.register(mine, "tin", Decimal("1000"), g.tick(1))
    outputs = g.smelt(trader, [lot])
    first = as_trader_processing(g.s.events)
    mark = len(g.s.events)
    g.certify(trader, "rmap", "conformant", "2020-01-01")  # the assessment's outcome, known after the smelting
    later = g.s.events[mark:]

    await apply_batches(late_url, Projection(), [first])
    raised = [k for k in await flags(late_url) if k[0] in ("smelter_rmap_active", "smelter_not_rmap_conformant")]
    assert [k[0] for k in raised] == ["smelter_rmap_active"]
    row = (await flags(late_url))[raised[0]]
    assert row["severity"] == "medium" and row["lot_ids"] == [o.lot_id for o in outputs]
    assert orjson.loads(row["evidence"])["actor_kind"] == "trader"
    assert orjson.loads(row["evidence"])["screened_as_smelter_by"] == "forms"

    # A fresh projection loads its state from the tables: the trader's smelting is in it, and is re-judged.
    await apply_batches(late_url, Projection(), [later])
    assert (await statuses(late_url))[raised[0]] == "withdrawn"
    await apply_batches(in_order_url, Projection(), [registry_first(first, later)])
    assert not [k for k in await flags(in_order_url) if k[0] == "smelter_rmap_active"]
    assert await not_withdrawn(late_url) == await not_withdrawn(in_order_url)
    smelters = await fetch(late_url, "SELECT actor_kind, kind FROM transformations")
    assert [(r["actor_kind"], r["kind"]) for r in smelters] == [("trader", "processing")]
