"""Audit keeps a transformation once (n + m rows), from the event custody publishes once and the small lot events
that refer to it, in whatever order they arrive, with the same flags as the version 1 events (both lists in every
lot's event) that older streams hold; and a risk summary cut at its depth says where and why (issue 22, section 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from audit.projection import Projection
from audit.service import Audit, lot_risk
from custody.service import transformation_digest
from custody.unit_of_work import custody_event
from shared.auth import Principal
from shared.consumer import Delivered
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS
from tests.audit.conftest import audit_databases

AT = "2026-11-10T08:00:00+00:00"
SMELTER = "smelter-1"
TABLES = "received_events, lots, lot_holders, transformations, transformation_inputs, transformation_outputs, flags"


@pytest.fixture(scope="module")
async def db(infra: None) -> AsyncIterator[str]:
    async with audit_databases("audit_tp", 1) as (url,):
        yield url


def declared(lot_id: str, kg: str) -> CloudEvent:
    return custody_event(
        "custody.lot.external_declared",
        lot_id,
        {
            "lot_id": lot_id,
            "mineral": "tin",
            "form": "concentrate",
            "mass_kg": kg,
            "tag": None,
            "seal": None,
            "custodian": SMELTER,
            "custodian_kind": "smelter",
            "declared_origin": {"country": "MM", "region": None, "mine_name": None, "participant_id": None},
            "supplier": {"name": "s", "country": None},
            "occurred_at": "2026-11-01T08:00:00+00:00",
            "actor": SMELTER,
        },
    )


def transformation(tid: str, inputs: list[str], outputs: list[str], out_kg: str) -> tuple[CloudEvent, ...]:
    """A transformation as custody publishes it now: once with both lists, then one small event per lot."""
    header = {"transformation_id": tid, "kind": "smelting", "by": SMELTER, "by_kind": "smelter", "by_country": "MY"}
    recorded = {
        **header,
        "occurred_at": AT,
        "inputs": [{"lot_id": i, "mineral": "tin", "form": "concentrate", "mass_kg": "10.000"} for i in inputs],
        "outputs": [{"lot_id": o, "mineral": "tin", "form": "metal", "mass_kg": out_kg} for o in outputs],
    }
    per_lot = {**header, "transformation_digest": transformation_digest(recorded), "occurred_at": AT}
    chain = {"actor": SMELTER, "occurred_at": AT}
    lot_events = [
        custody_event(
            "custody.lot.transformed",
            i,
            {
                **per_lot,
                **chain,
                "lot_id": i,
                "role": "input",
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": "10.000",
                "remaining_before_kg": "10.000",
                "remaining_after_kg": "0.000",
            },
        )
        for i in inputs
    ] + [
        custody_event(
            "custody.lot.transformed",
            o,
            {**per_lot, **chain, "lot_id": o, "role": "output", "mineral": "tin", "form": "metal", "mass_kg": out_kg},
        )
        for o in outputs
    ]
    return (custody_event("custody.transformation.recorded", tid, recorded), *lot_events)


def version_1(events: Sequence[CloudEvent]) -> list[CloudEvent]:
    """The same transformation as custody published it before: no recorded event, both lists in every lot's event."""
    recorded = next(e for e in events if e.type == "custody.transformation.recorded").data
    lists = {
        "inputs": [{**i, "remaining_before_kg": "10.000", "remaining_after_kg": "0.000"} for i in recorded["inputs"]],
        "outputs": recorded["outputs"],
    }
    keep = ("transformation_id", "kind", "by", "by_kind", "by_country", "role", "lot_id", "actor", "occurred_at")
    return [
        custody_event(e.type, e.key, {**{k: e.data[k] for k in keep}, **lists})
        for e in events
        if e.type == "custody.lot.transformed"
    ]


async def applied(url: str, events: Sequence[CloudEvent]) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
        p = Projection(publish=False)
        async with conn.transaction():
            await p.apply_batch(conn, [Delivered(e, CUSTODY_EVENTS, 0, n) for n, e in enumerate(events)])
        assert p.malformed == 0
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES.split(", ")}
        flags = {
            (r["rule"], r["cause"]): (r["lot_id"], list(r["lot_ids"]))
            for r in await conn.fetch("SELECT rule, cause, lot_id, lot_ids FROM flags")
        }
        return {"counts": counts, "flags": flags}
    finally:
        await conn.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_transformation_is_kept_once_in_any_order_and_flags_as_version_1_did(db: str) -> None:
    inputs = [f"IN-{i:03d}" for i in range(40)]
    outputs = [f"OUT-{i:03d}" for i in range(30)]
    lots = [declared(i, "10.000") for i in inputs]
    trf = transformation("TRF-A", inputs, outputs, "20.000")  # 600 kg out of 400 kg in: the yield rule fires
    recorded_first = await applied(db, [*lots, *trf])
    recorded_last = await applied(db, [*lots, *trf[1:], trf[0]])
    older = await applied(db, [*lots, *version_1(trf)])

    counts = recorded_first["counts"]
    assert (counts["transformation_inputs"], counts["transformation_outputs"]) == (40, 30)  # n + m, not n x m
    assert counts["transformations"] == 1 and counts["lots"] == 70
    yield_flag = recorded_first["flags"][("yield_exceeded", "TRF-A:tin")]
    assert yield_flag == ("OUT-000", outputs)
    assert ("smelter_not_rmap_conformant", "TRF-A") in recorded_first["flags"]
    assert recorded_last == recorded_first
    assert older["flags"] == recorded_first["flags"]
    assert {k: v for k, v in older["counts"].items() if k != "received_events"} == {
        k: v for k, v in counts.items() if k != "received_events"
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_a_risk_summary_deeper_than_its_limit_says_where_it_stopped(db: str) -> None:
    """A 105-step genealogy: the risk summary of its last lot cannot see the origin (and its flag) 105 steps up;
    it says it stopped at depth 100, at which lot."""
    chain = ["L-000"]
    events: list[CloudEvent] = [declared(chain[0], "10.000")]  # undocumented custody: a flag on the origin
    for step in range(1, 106):
        chain.append(f"L-{step:03d}")
        events.extend(transformation(f"TRF-{step:03d}", [chain[-2]], [chain[-1]], "10.000"))
    await applied(db, events)
    pool = await asyncpg.create_pool(db, min_size=1, max_size=2)
    try:
        audit = Audit(pool=pool, max_depth=100)
        operator = Principal(subject="operator", kind="operator")
        cut = await lot_risk(audit=audit, who=operator, lot_id=chain[-1])
        assert cut.upstream_lots == 100 and cut.origins == []
        assert cut.truncated is not None
        assert cut.truncated.model_dump() == {"reason": "max_depth", "max_depth": 100, "at_lots": [chain[5]]}
        whole = await lot_risk(audit=audit, who=operator, lot_id=chain[100])
        assert whole.truncated is None
        assert [o.lot_id for o in whole.origins] == [chain[0]]
        assert any(e.flag.rule == "undocumented_custody" for e in whole.inherited)
    finally:
        await pool.close()
