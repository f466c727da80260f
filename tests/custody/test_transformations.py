"""Transformations are stored and published once (n + m rows, one event with both lists, small lot events that refer
to it), bounded before any work, and traces say where and why they stopped (issue 22, section 1)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from custody.domain import MAX_TRANSFORMATION_INPUTS, MAX_TRANSFORMATION_OUTPUTS
from custody.schemas import Trace
from tests.conftest import OPERATOR
from tests.custody.conftest import Party, Stack

T0 = "2026-11-10T08:00:00Z"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12].upper()}"


async def declare(stack: Stack, who: Party, mass: float = 100) -> str:
    body = {
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": mass,
        "received_at": "2026-11-03T12:00:00Z",
        "origin": {"country": "MM"},
        "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
    }
    return str((await ok(await stack.custody.post("/lots/external", headers=who.auth, json=body)))["lot_id"])


async def transform(stack: Stack, who: Party, inputs: list[tuple[str, float]], outputs: list[float]) -> dict[str, Any]:
    body = {
        "kind": "processing",
        "occurred_at": T0,
        "inputs": [{"lot_id": lot, "mass_kg": kg} for lot, kg in inputs],
        "outputs": [{"mineral": "tin", "form": "concentrate", "mass_kg": kg} for kg in outputs],
    }
    return await ok(await stack.custody.post("/transformations", headers=who.auth, json=body))


@pytest.mark.asyncio(loop_scope="session")
async def test_a_transformation_is_stored_once_not_as_n_times_m_edges(stack: Stack) -> None:
    smelter = await stack.party("smelter", "MY")
    lots = [await declare(stack, smelter) for _ in range(15)]
    made = await transform(stack, smelter, [(lot, 100) for lot in lots], [90] * 15)
    tid = made["transformation_id"]
    outputs = [o["lot_id"] for o in made["outputs"]]

    # n + m rows linked to the transformation, in the order given; no n x m edge table any more.
    inputs_rows = await stack.count("SELECT count(*) FROM transformation_inputs WHERE transformation_id = $1", tid)
    outputs_rows = await stack.count("SELECT count(*) FROM transformation_outputs WHERE transformation_id = $1", tid)
    assert (inputs_rows, outputs_rows) == (15, 15)
    assert await stack.count("SELECT count(*) FROM pg_tables WHERE tablename = 'genealogy'") == 0
    assert await stack.count(
        "SELECT count(*) FROM transformation_outputs WHERE transformation_id = $1 AND lot_id = $2 AND position = 14",
        tid,
        outputs[14],
    )
    # Each lot's event says what happened to that lot and refers to the transformation; it does not carry both
    # lists (before: 30 events of ~4.5 kB each, 225 edges).
    stored = await stack.count(
        "SELECT coalesce(sum(length(data::text)), 0) FROM lot_events WHERE data->>'transformation_id' = $1", tid
    )
    events = await stack.count("SELECT count(*) FROM lot_events WHERE data->>'transformation_id' = $1", tid)
    assert events == 30
    assert stored < 30 * 500, stored
    # The traces walk through the transformation.
    up = await ok(await stack.custody.get(f"/lots/{outputs[3]}/trace", headers=smelter.auth), 200)
    Trace.model_validate(up)
    assert {n["lot_id"] for n in up["nodes"]} == {outputs[3], *lots}
    assert {(e["parent"], e["child"], e["mass_kg"]) for e in up["edges"]} == {(lot, outputs[3], 100) for lot in lots}
    assert up["truncated"] is None
    down = await ok(await stack.custody.get(f"/lots/{lots[0]}/trace?direction=downstream", headers=smelter.auth), 200)
    assert {n["lot_id"] for n in down["nodes"]} == {lots[0], *outputs}
    assert len(down["edges"]) == 15 and down["truncated"] is None


@pytest.mark.asyncio(loop_scope="session")
async def test_too_many_inputs_or_outputs_are_refused_before_any_work_naming_the_bound(stack: Stack) -> None:
    smelter = await stack.party("smelter", "MY")
    lot = await declare(stack, smelter)
    rejected_before = await stack.count("SELECT count(*) FROM rejected_attempts")
    for side, bound in (("inputs", MAX_TRANSFORMATION_INPUTS), ("outputs", MAX_TRANSFORMATION_OUTPUTS)):
        n = bound + 1
        body: dict[str, Any] = {
            "kind": "processing",
            "occurred_at": T0,
            "inputs": [{"lot_id": lot, "mass_kg": 1}],
            "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 1}],
        }
        if side == "inputs":  # lots that do not exist: the bound is checked before any is looked up
            body["inputs"] = [{"lot_id": new_id("NOPE"), "mass_kg": 1} for _ in range(n)]
        else:
            body["outputs"] = [{"mineral": "tin", "form": "metal", "mass_kg": 0.001} for _ in range(n)]
        key = {"Idempotency-Key": new_id("K")}
        r = await stack.custody.post("/transformations", headers={**smelter.auth, **key}, json=body)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert problem[f"max_{side}"] == bound
        assert problem["errors"][0]["where"] == f"body.{side}"
        assert f"max_{side}: {bound}" in problem["detail"]
        assert await stack.count("SELECT count(*) FROM idempotency_keys WHERE key = $1", key["Idempotency-Key"]) == 0
    assert await stack.count("SELECT count(*) FROM rejected_attempts") == rejected_before
    assert (await ok(await stack.custody.get(f"/lots/{lot}", headers=smelter.auth), 200))["events"] == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_a_lot_listed_twice_is_refused(stack: Stack) -> None:
    smelter = await stack.party("smelter", "MY")
    lot = await declare(stack, smelter)
    twice = {
        "kind": "processing",
        "occurred_at": T0,
        "inputs": [{"lot_id": lot, "mass_kg": 1}, {"lot_id": lot, "mass_kg": 1}],
        "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 1}],
    }
    r = await stack.custody.post("/transformations", headers=smelter.auth, json=twice)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "body.inputs.1.lot_id", r.text
    out = new_id("OUT")
    same_out = {
        **twice,
        "inputs": [{"lot_id": lot, "mass_kg": 1}],
        "outputs": [{"lot_id": out, "mineral": "tin", "form": "metal", "mass_kg": 1}] * 2,
    }
    r = await stack.custody.post("/transformations", headers=smelter.auth, json=same_out)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "body.outputs.1.lot_id", r.text
    assert (await ok(await stack.custody.get(f"/lots/{lot}", headers=smelter.auth), 200))["remaining_kg"] == 100


@pytest.mark.asyncio(loop_scope="session")
async def test_a_trace_deeper_than_its_limit_says_where_it_stopped(stack: Stack) -> None:
    """A 105-step genealogy: the upstream trace answers the 101 lots it may walk (depth 0 to 100) and says that it
    stopped at depth 100, at the lot the origin lies beyond; before, it answered 200 with no word of a cut."""
    smelter = await stack.party("smelter", "MY")
    chain = [await declare(stack, smelter, 1000)]
    for _ in range(105):
        made = await transform(stack, smelter, [(chain[-1], 1000)], [1000])
        chain.append(made["outputs"][0]["lot_id"])

    up = await ok(await stack.custody.get(f"/lots/{chain[-1]}/trace", headers=smelter.auth), 200)
    Trace.model_validate(up)
    assert len(up["nodes"]) == 101
    assert up["origins"] == []  # the origin is 105 steps up: beyond the limit ...
    assert up["truncated"] == {"reason": "max_depth", "max_depth": 100, "at_lots": [chain[5]]}  # ... and it says so
    whole = await ok(await stack.custody.get(f"/lots/{chain[100]}/trace", headers=smelter.auth), 200)
    assert whole["truncated"] is None and [o["lot_id"] for o in whole["origins"]] == [chain[0]]
    down = await ok(await stack.custody.get(f"/lots/{chain[0]}/trace?direction=downstream", headers=OPERATOR), 200)
    assert len(down["nodes"]) == 101
    assert down["truncated"] == {"reason": "max_depth", "max_depth": 100, "at_lots": [chain[100]]}
