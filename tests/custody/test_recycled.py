"""Recycled and scrap origin lots (issue 25): registered by recyclers (and smelters and refiners taking scrap), on
the lot's own hash chain like a mine's registration, shown as their origin in reads and traces; and the
chain-of-custody model of a transformation, in its events, its digest and the trace's edges."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from custody.schemas import Lot, Trace
from tests.conftest import OPERATOR
from tests.custody.conftest import Party, Stack
from tests.custody.test_event_schemas import read_ours


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


def recycled_body(**extra: Any) -> dict[str, Any]:
    return {
        "mineral": "tin",
        "form": "alloy",
        "mass_kg": 800,
        "source": "scrap",
        "country": "DE",
        "region": "DE-BY",
        "description": "Solder dross from PCB assembly",
        "collected_at": "2026-11-28T10:00:00Z",
        **extra,
    }


async def recycle(stack: Stack, who: Party, **extra: Any) -> dict[str, Any]:
    return await ok(await stack.custody.post("/lots/recycled", headers=who.auth, json=recycled_body(**extra)))


def events_of(records: list[Any], type_: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if dict(r.headers)["ce_type"] == type_.encode()]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_recycler_registers_a_recycled_origin_lot(stack: Stack) -> None:
    recycler = await stack.party("recycler", "DE")
    local = new_id("RCY")
    lot = await recycle(stack, recycler, lot_id=local, tag="T-1")
    Lot.model_validate(lot)
    assert lot["lot_id"].endswith(f":{local}")
    assert lot["origin"] == {
        "kind": "recycled",
        "participant_id": recycler.id,
        "country": "DE",
        "region": "DE-BY",
        "mine_name": None,
        "mining_type": None,
        "source": "scrap",
        "description": "Solder dross from PCB assembly",
    }
    assert lot["custodian"] == recycler.id and lot["events"] == 1
    assert await ok(await stack.custody.get(f"/lots/{local}", headers=recycler.auth), 200) == lot
    assert await stack.count("SELECT count(*) FROM lots WHERE lot_id = $1 AND origin_source = 'scrap'", lot["lot_id"])

    (event,) = events_of(await read_ours(stack, {lot["lot_id"]}, 1), "custody.lot.recycled")
    assert (event["seq"], event["recipe"], event["prev_hash"]) == (1, 2, "0" * 64)
    assert event["origin"] == {
        "kind": "recycled",
        "source": "scrap",
        "participant_id": recycler.id,
        "country": "DE",
        "region": "DE-BY",
        "description": "Solder dross from PCB assembly",
        "collected_at": "2026-11-28T10:00:00Z",
    }
    assert (event["custodian"], event["custodian_kind"], event["mass_kg"]) == (recycler.id, "recycler", "800.000")

    # A smelter takes scrap directly; a recycled source without collection time or region.
    smelter = await stack.party("smelter", "MY")
    plain = await recycle(stack, smelter, source="recycled", country="MY", region=None, collected_at=None)
    assert plain["origin"]["source"] == "recycled" and plain["origin"]["region"] is None


@pytest.mark.asyncio(loop_scope="session")
async def test_only_recyclers_smelters_and_refiners_register_recycled_lots(stack: Stack) -> None:
    for kind in ("mine", "trader", "manufacturer"):
        who = await stack.party(kind, "RW")
        r = await stack.custody.post("/lots/recycled", headers=who.auth, json=recycled_body())
        assert r.status_code == 403, (kind, r.text)
    r = await stack.custody.post("/lots/recycled", headers=OPERATOR, json=recycled_body())
    assert r.status_code == 403


@pytest.mark.asyncio(loop_scope="session")
async def test_a_recycled_lots_bounds(stack: Stack) -> None:
    recycler = await stack.party("recycler", "DE")
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    for extra, where in (
        ({"description": "x" * 501}, "description"),
        ({"collected_at": future}, "collected_at"),
        ({"collected_at": "1899-12-31T23:59:59Z"}, "collected_at"),
        ({"source": "ore"}, "source"),
        ({"mass_kg": 0}, "mass_kg"),
        ({"country": "XX"}, "country"),
    ):
        r = await stack.custody.post("/lots/recycled", headers=recycler.auth, json=recycled_body(**extra))
        assert r.status_code == 422, (extra, r.text)
        assert where in r.text
    r = await stack.custody.post("/lots/recycled", headers=recycler.auth, json=recycled_body(region="FR-IDF"))
    assert r.status_code == 422 and "body.region" in r.text, r.text
    # An id taken: 409 (a refusal, as for any lot).
    local = new_id("RCY")
    await recycle(stack, recycler, lot_id=local)
    r = await stack.custody.post("/lots/recycled", headers=recycler.auth, json=recycled_body(lot_id=local))
    assert r.status_code == 409 and r.json()["reason"] == "lot_exists", r.text
    assert await stack.count("SELECT count(*) FROM lots WHERE custodian = $1", recycler.id) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_a_recycled_lot_is_an_origin_of_the_trace_with_the_custody_model_on_its_edges(stack: Stack) -> None:
    recycler, smelter = await stack.party("recycler", "DE"), await stack.party("smelter", "MY")
    scrap = await recycle(stack, recycler, mass_kg=100)
    await stack.move(scrap["lot_id"], recycler, smelter, 100, "2026-11-29T08:00:00Z", "2026-11-30T08:00:00Z")
    body = {
        "kind": "refining",
        "occurred_at": "2026-12-01T08:00:00Z",
        "custody_model": "segregated",
        "inputs": [{"lot_id": scrap["lot_id"], "mass_kg": 100}],
        "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 90}],
    }
    key = new_id("K")
    made = await ok(
        await stack.custody.post("/transformations", headers={**smelter.auth, "Idempotency-Key": key}, json=body)
    )
    assert made["custody_model"] == "segregated"
    tin = made["outputs"][0]["lot_id"]
    # The same request again under its key: the first answer; the same key with another model: refused (422).
    again = await stack.custody.post("/transformations", headers={**smelter.auth, "Idempotency-Key": key}, json=body)
    assert again.status_code == 201 and again.json()["transformation_id"] == made["transformation_id"]
    other = {**body, "custody_model": "mass_balance"}
    r = await stack.custody.post("/transformations", headers={**smelter.auth, "Idempotency-Key": key}, json=other)
    assert r.status_code == 422 and "Idempotency-Key" in r.text, r.text
    # A model that is none of ISO 22095's: 422.
    r = await stack.custody.post("/transformations", headers=smelter.auth, json={**body, "custody_model": "magic"})
    assert r.status_code == 422
    assert await stack.count("SELECT count(*) FROM transformations WHERE actor = $1", smelter.id) == 1
    assert await stack.count(
        "SELECT count(*) FROM transformations WHERE transformation_id = $1 AND custody_model = 'segregated'",
        made["transformation_id"],
    )

    trace = await ok(await stack.custody.get(f"/lots/{tin}/trace", headers=smelter.auth), 200)
    Trace.model_validate(trace)
    assert [o["lot_id"] for o in trace["origins"]] == [scrap["lot_id"]]
    assert trace["origins"][0]["origin"]["kind"] == "recycled" and trace["origins"][0]["origin"]["source"] == "scrap"
    assert [(e["parent"], e["child"], e["custody_model"]) for e in trace["edges"]] == [
        (scrap["lot_id"], tin, "segregated")
    ]

    # The model is in the transformation's event, each lot's event, and so in the digest every chain commits to.
    records = await read_ours(stack, {made["transformation_id"], tin, scrap["lot_id"]}, 6)
    (recorded,) = events_of(records, "custody.transformation.recorded")
    assert recorded["custody_model"] == "segregated"
    lot_events = events_of(records, "custody.lot.transformed")
    assert {e["custody_model"] for e in lot_events} == {"segregated"} and len(lot_events) == 2
    digest = hashlib.sha256(orjson.dumps(recorded, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert {e["transformation_digest"] for e in lot_events} == {digest}
    without = {k: v for k, v in recorded.items() if k != "custody_model"}
    assert hashlib.sha256(orjson.dumps(without, option=orjson.OPT_SORT_KEYS)).hexdigest() != digest

    # The history shows it too; a transformation without a model records null.
    history = await ok(await stack.custody.get(f"/lots/{tin}/history", headers=smelter.auth), 200)
    assert history["events"][0]["data"]["custody_model"] == "segregated" and history["chain_valid"]
    plain = await ok(
        await stack.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                **{k: v for k, v in body.items() if k != "custody_model"},
                "inputs": [{"lot_id": tin, "mass_kg": 10}],
                "outputs": [{"mineral": "tin", "form": "alloy", "mass_kg": 10}],
            },
        )
    )
    assert plain["custody_model"] is None
    trace = await ok(await stack.custody.get(f"/lots/{plain['outputs'][0]['lot_id']}/trace", headers=OPERATOR), 200)
    assert {e["child"]: e["custody_model"] for e in trace["edges"]} == {
        tin: "segregated",
        plain["outputs"][0]["lot_id"]: None,
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_a_buyer_downstream_sees_a_recyclers_identity_only_as_its_policy_allows(stack: Stack) -> None:
    recycler = await stack.party("recycler", "DE")
    smelter, maker = await stack.party("smelter", "MY"), await stack.party("manufacturer", "FR")
    scrap = await recycle(stack, recycler, mass_kg=50)
    await stack.move(scrap["lot_id"], recycler, smelter, 50, "2026-11-29T08:00:00Z", "2026-11-30T08:00:00Z")
    made = await ok(
        await stack.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": "2026-12-01T08:00:00Z",
                "inputs": [{"lot_id": scrap["lot_id"], "mass_kg": 50}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 45}],
            },
        )
    )
    tin = made["outputs"][0]["lot_id"]
    await stack.move(tin, smelter, maker, 45, "2026-12-02T08:00:00Z", "2026-12-03T08:00:00Z")
    # The manufacturer never traded with the recycler: by default its identity is withheld, its country shown.
    trace = await ok(await stack.custody.get(f"/lots/{tin}/trace", headers=maker.auth), 200)
    (origin,) = trace["origins"]
    assert origin["origin"]["participant_id"] is None and "origin.participant_id" in origin["withheld"]
    assert (origin["origin"]["kind"], origin["origin"]["source"], origin["origin"]["country"]) == (
        "recycled",
        "scrap",
        "DE",
    )
    assert recycler.id not in orjson.dumps(trace).decode()
    # Its counterparty (the smelter) sees it.
    trace = await ok(await stack.custody.get(f"/lots/{tin}/trace", headers=smelter.auth), 200)
    assert trace["origins"][0]["origin"]["participant_id"] == recycler.id
    # The recycled lot's history as the manufacturer reads it: the recycler withheld, and it still verifies.
    history = await ok(await stack.custody.get(f"/lots/{scrap['lot_id']}/history", headers=maker.auth), 200)
    first = history["events"][0]
    assert first["type"] == "custody.lot.recycled" and first["actor"] is None
    assert "origin.participant_id" in first["withheld"] and first["data"]["origin"]["source"] == "scrap"
    assert history["chain_valid"] is True
    assert recycler.id not in orjson.dumps(history).decode()
