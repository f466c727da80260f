"""What a participant sees of custody's lots, histories and traces (issue 24, part D), through the real services: the
registry as its own process (participant and regulator tokens, policies on `registry.events`) and custody with its
consumer (`tests/custody/conftest.py`).

One supply chain per test: a mine (ASM, CD-SK) -> a trader -> a smelter (smelts the ore into tin) -> a refiner
(refines it) -> a component maker, each hand-off a shipment and its receipt. Whatever the policies, a viewer sees
what due diligence needs (minerals, forms, masses, dates, origin country/region/mining type, smelters); identities
only as `shared.visibility.identity_disclosed` says; a lot's current state only as its custodian; a former holder's
view ends at its buyer's receipt; a downstream buyer's view of an upstream lot at the transformation that fed it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from custody.schemas import Lot, LotPage, Trace
from tests.conftest import OPERATOR, bearer
from tests.custody.conftest import Party, Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

CURRENT = ["custodian", "status", "remaining_kg", "events", "head_hash"]
ORIGIN_ID = ["origin.participant_id", "origin.mine_name"]
SHIPPED, RECEIVED, TRANSFORMED = "custody.lot.shipped", "custody.lot.received", "custody.lot.transformed"


async def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


@dataclass
class Chain:
    mine: Party
    trader: Party
    smelter: Party
    refiner: Party
    maker: Party
    ore: str  # the mine's lot, shipped mine -> trader -> smelter, smelted into `tin`
    tin: str  # the smelter's, shipped to the refiner, refined into `refined`
    refined: str  # the refiner's, shipped to the maker (its custodian now)


async def deliver(stack: Stack, lot: str, a: Party, b: Party, mass: float, day: int) -> None:
    at = f"2026-11-{day:02d}T08:00:00Z"
    body = {"to": b.id, "mass_kg": mass, "shipped_at": at, "seal": f"S-{day}", "transit_countries": ["RW"]}
    shipment = await ok(await stack.custody.post(f"/lots/{lot}/shipments", json=body, headers=a.auth), 201)
    receipt = {"received_at": f"2026-11-{day + 1:02d}T08:00:00Z", "mass_kg": mass, "seal": f"S-{day}"}
    await ok(await stack.custody.post(f"/shipments/{shipment['shipment_id']}/receipt", json=receipt, headers=b.auth))


async def transform(stack: Stack, who: Party, kind: str, lot: str, mass: float, out_kg: float, day: int) -> str:
    body = {
        "kind": kind,
        "occurred_at": f"2026-11-{day:02d}T08:00:00Z",
        "inputs": [{"lot_id": lot, "mass_kg": mass}],
        "outputs": [{"lot_id": f"OUT-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "metal", "mass_kg": out_kg}],
    }
    made = await ok(await stack.custody.post("/transformations", json=body, headers=who.auth), 201)
    return str(made["outputs"][0]["lot_id"])


async def chain(stack: Stack, **policies: str) -> Chain:
    """A fresh chain; `policies`: a disclosure policy per role, given at registration."""

    async def party(role: str, kind: str, country: str, **extra: Any) -> Party:
        if role in policies:
            extra["disclosure"] = policies[role]
        return await stack.party(kind, country, **extra)

    mine, trader, smelter, refiner, maker = await asyncio.gather(
        party("mine", "mine", "CD", region="CD-SK"),
        party("trader", "trader", "RW"),
        party("smelter", "smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"}),
        party("refiner", "refiner", "BE"),
        party("maker", "component_manufacturer", "TW"),
    )
    body = {"lot_id": f"BAG-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "ore", "mass_kg": 1000}
    body |= {"produced_at": "2026-11-01T08:00:00Z", "tag": "T-1", "seal": "S-1"}
    ore = (await ok(await stack.custody.post("/lots", json=body, headers=mine.auth), 201))["lot_id"]
    await deliver(stack, ore, mine, trader, 1000, 2)
    await deliver(stack, ore, trader, smelter, 1000, 4)
    tin = await transform(stack, smelter, "smelting", ore, 1000, 700, 6)
    await deliver(stack, tin, smelter, refiner, 700, 7)
    refined = await transform(stack, refiner, "refining", tin, 700, 690, 9)
    await deliver(stack, refined, refiner, maker, 690, 10)
    return Chain(mine, trader, smelter, refiner, maker, ore, tin, refined)


async def lot(stack: Stack, who: Party, lot_id: str) -> dict[str, Any]:
    body = await ok(await stack.custody.get(f"/lots/{lot_id}", headers=who.auth))
    Lot.model_validate(body)
    return body  # type: ignore[no-any-return]


async def history(stack: Stack, who: Party | dict[str, str], lot_id: str) -> dict[str, Any]:
    headers = who.auth if isinstance(who, Party) else who
    body = await ok(await stack.custody.get(f"/lots/{lot_id}/history", headers=headers))
    assert body["chain_valid"], body  # what is shown verifies, withheld fields and all
    return body  # type: ignore[no-any-return]


async def trace(stack: Stack, who: Party | dict[str, str], lot_id: str, direction: str = "upstream") -> dict[str, Any]:
    headers = who.auth if isinstance(who, Party) else who
    body = await ok(await stack.custody.get(f"/lots/{lot_id}/trace?direction={direction}", headers=headers))
    Trace.model_validate(body)
    return body  # type: ignore[no-any-return]


def kinds(h: dict[str, Any]) -> list[tuple[int, str]]:
    return [(e["seq"], e["type"]) for e in h["events"]]


def event(h: dict[str, Any], type_: str, n: int = 0) -> dict[str, Any]:
    return [e for e in h["events"] if e["type"] == type_][n]  # type: ignore[no-any-return]


def node(t: dict[str, Any], lot_id: str) -> dict[str, Any]:
    return next(n for n in t["nodes"] if n["lot_id"] == lot_id)  # type: ignore[no-any-return]


async def set_policy(stack: Stack, who: Party, policy: str) -> None:
    """The participant changes its own policy in the registry; custody learns it from `registry.events`."""
    r = await stack.registry.put(f"/participants/{who.id}/disclosure", json={"disclosure": policy}, headers=who.auth)
    assert r.status_code == 200, r.text

    async def known() -> bool:
        conn = await asyncpg.connect(stack.custody_dsn)
        try:
            return await conn.fetchval("SELECT disclosure FROM participants WHERE id = $1", who.id) == policy
        finally:
            await conn.close()

    await wait_for(known, timeout_s=20, what=f"custody to learn {who.id}'s policy")


async def test_a_former_holder_sees_the_lot_up_to_its_buyers_receipt(stack: Stack) -> None:
    c = await chain(stack)
    # The mine sold the ore to the trader: the lot's static fields, not its current state.
    seen = await lot(stack, c.mine, c.ore)
    assert [seen[f] for f in CURRENT] == [None] * 5
    assert seen["withheld"] == CURRENT  # its own identity as origin stays
    assert (seen["mineral"], seen["form"], seen["mass_kg"], seen["tag"], seen["seal"]) == (
        "tin",
        "ore",
        1000,
        "T-1",
        "S-1",
    )
    assert seen["origin"]["participant_id"] == c.mine.id and seen["origin"]["country"] == "CD"
    whole = await lot(
        stack, c.smelter, c.ore
    )  # the smelter holds it (depleted by the smelting), bought not of the mine
    assert (whole["custodian"], whole["status"], whole["remaining_kg"], whole["events"]) == (
        c.smelter.id,
        "depleted",
        0,
        6,
    )
    assert whole["withheld"] == ORIGIN_ID and whole["origin"]["country"] == "CD"
    # History: registered, shipped to the trader, the trader's receipt; nothing later.
    h = await history(stack, c.mine, c.ore)
    assert kinds(h) == [(1, "custody.lot.registered"), (2, SHIPPED), (3, RECEIVED)]
    assert event(h, RECEIVED)["actor"] == c.trader.id and event(h, RECEIVED)["withheld"] == []  # its buyer, same event
    h = await history(stack, c.trader, c.ore)  # the trader: up to the smelter's receipt, not the smelting
    assert kinds(h)[-2:] == [(4, SHIPPED), (5, RECEIVED)]
    operator = await history(stack, OPERATOR, c.ore)
    assert kinds(operator)[-1] == (6, TRANSFORMED) and all(e["withheld"] == [] for e in operator["events"])
    # Its list: the lot it held, current state withheld; current-state filters match only what it holds now.
    page = LotPage.model_validate(await ok(await stack.custody.get("/lots", headers=c.mine.auth)))
    assert [(i.lot_id, i.custodian, i.status) for i in page.items] == [(c.ore, None, None)]
    for query in (f"custodian={c.smelter.id}", "status=depleted", f"custodian={c.mine.id}"):
        assert (await ok(await stack.custody.get(f"/lots?{query}", headers=c.mine.auth)))["items"] == [], query
    # Traces: downstream, only the lot itself (never what the smelter made of it), without its current state.
    down = await trace(stack, c.mine, c.ore, "downstream")
    assert [n["lot_id"] for n in down["nodes"]] == [c.ore] and down["edges"] == [] and down["products"] == []
    assert down["nodes"][0]["custodian"] is None and down["nodes"][0]["withheld"] == CURRENT
    up = await trace(stack, c.trader, c.ore)
    assert node(up, c.ore)["custodian"] is None and node(up, c.ore)["origin"]["participant_id"] == c.mine.id


async def test_far_downstream_sees_due_diligence_but_not_identities_by_default(stack: Stack) -> None:
    c = await chain(stack)
    for viewer in (c.refiner, c.maker):  # two and three tiers below the mine, no counterparty of it
        t = await trace(stack, viewer, c.refined)
        ore = node(t, c.ore)
        assert ore["origin"] == {
            "kind": "mine",
            "participant_id": None,
            "country": "CD",
            "region": "CD-SK",
            "mine_name": None,
            "mining_type": "asm",
            "source": None,  # a recycled origin's (issue 25)
            "description": None,
        }
        assert ore["withheld"] == CURRENT + ORIGIN_ID
        assert (ore["mass_kg"], ore["produced_at"], ore["mineral"], ore["form"]) == (
            1000,
            "2026-11-01T08:00:00Z",
            "tin",
            "ore",
        )
        assert [o["lot_id"] for o in t["origins"]] == [c.ore] and t["origins"][0]["origin"]["participant_id"] is None
        # Smelters and refiners are public: always named, on the edges and among the smelters.
        assert {(e["kind"], e["actor"]) for e in t["edges"]} == {("smelting", c.smelter.id), ("refining", c.refiner.id)}
        assert sorted((s["participant_id"], s["withheld"]) for s in t["smelters"]) == sorted(
            [(c.smelter.id, []), (c.refiner.id, [])]
        )
        # The ore's history: up to the smelting that fed its material; the mine and the trader withheld.
        h = await history(stack, viewer, c.ore)
        assert kinds(h)[-1] == (6, TRANSFORMED)
        registered, shipped = event(h, "custody.lot.registered"), event(h, SHIPPED)
        mine_id = {"origin.participant_id", "origin.name"}  # the origin's other keys are due diligence: shown
        assert registered["actor"] is None and set(registered["withheld"]) == {"actor", "custodian", *mine_id}
        assert set(registered["digests"]) >= {"actor", "custodian", *mine_id, "origin.country", "mass_kg"}
        assert registered["data"]["mass_kg"] == "1000.000" and registered["data"]["origin"]["country"] == "CD"
        assert mine_id.isdisjoint(f"origin.{k}" for k in registered["data"]["origin"])
        assert shipped["actor"] is None and set(shipped["withheld"]) == {"actor", "from", "to"}
        to_smelter = event(h, SHIPPED, 1)
        assert (to_smelter["actor"], to_smelter["data"]["to"], to_smelter["withheld"]) == (
            None,
            c.smelter.id,
            ["actor", "from"],
        )
        smelted = event(h, TRANSFORMED)
        assert (smelted["actor"], smelted["data"]["by"], smelted["withheld"]) == (c.smelter.id, c.smelter.id, [])
    # The refined lot's history for the maker: the refiner's receipt of its shipment is a shared event.
    h = await history(stack, c.maker, c.refined)
    assert event(h, RECEIVED)["actor"] == c.maker.id and event(h, RECEIVED)["data"]["shipped"]["from"] == c.refiner.id

    # The mine opens its identity downstream, the trader to everyone: now both are named to the far tiers.
    await set_policy(stack, c.mine, "downstream")
    await set_policy(stack, c.trader, "public")
    t = await trace(stack, c.maker, c.refined)
    assert node(t, c.ore)["origin"]["participant_id"] == c.mine.id and node(t, c.ore)["withheld"] == CURRENT
    h = await history(stack, c.maker, c.ore)
    assert (
        event(h, "custody.lot.registered")["actor"] == c.mine.id
        and event(h, "custody.lot.registered")["withheld"] == []
    )
    assert event(h, SHIPPED)["data"]["to"] == c.trader.id and event(h, SHIPPED)["withheld"] == []
    assert event(h, SHIPPED, 1)["withheld"] == []


async def test_a_counterparty_sees_its_direct_supplier_and_the_operator_policy_hides_it_elsewhere(stack: Stack) -> None:
    c = await chain(stack)
    # The smelter bought from the trader: the trader is named wherever it appears; the mine (no trade) is not.
    h = await history(stack, c.smelter, c.ore)
    first = event(h, SHIPPED)  # mine -> trader: the smelter is not in it
    assert first["data"]["to"] == c.trader.id and first["actor"] is None and first["withheld"] == ["actor", "from"]
    assert event(h, RECEIVED)["actor"] == c.trader.id and event(h, RECEIVED)["withheld"] == ["shipped.from"]
    assert "from" not in event(h, RECEIVED)["data"]["shipped"] and event(h, RECEIVED)["data"]["shipped"]["mass_kg"]
    t = await trace(stack, c.smelter, c.tin)
    assert node(t, c.ore)["origin"]["participant_id"] is None
    trader_view = await trace(stack, c.trader, c.ore)
    assert node(trader_view, c.ore)["origin"]["participant_id"] == c.mine.id  # its direct supplier

    # The trader keeps its identity to the operator: the smelter sees it only on the events they share.
    await set_policy(stack, c.trader, "operator")
    h = await history(stack, c.smelter, c.ore)
    assert event(h, SHIPPED)["withheld"] == ["actor", "from", "to"]
    assert event(h, RECEIVED)["actor"] is None
    shared = event(h, SHIPPED, 1)  # trader -> smelter
    assert (shared["actor"], shared["data"]["from"], shared["withheld"]) == (c.trader.id, c.trader.id, [])
    # ... and the mine still sees its buyer on its own shipment.
    assert event(await history(stack, c.mine, c.ore), SHIPPED)["data"]["to"] == c.trader.id


async def test_the_operator_and_a_regulator_see_in_full_what_they_may_read(stack: Stack) -> None:
    c = await chain(stack)
    stray = await chain(stack)
    t = await trace(stack, OPERATOR, c.refined)
    assert node(t, c.ore)["custodian"] == c.smelter.id and node(t, c.ore)["withheld"] == []

    async def token(lots: list[str], participants: list[str]) -> dict[str, str]:
        body = {"name": f"Inspectorate {uuid.uuid4().hex[:6]}", "authority": "Mining Code art. 12", "country": "RW"}
        reg = await ok(await stack.registry.post("/regulators", headers=OPERATOR, json=body), 201)
        now = datetime.now(UTC)
        grant = {
            "lots": lots,
            "participants": participants,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_until": (now + timedelta(hours=1)).isoformat(),
            "reason": "ex-post check",
        }
        issued = await ok(
            await stack.registry.post(f"/regulators/{reg['id']}/grants", headers=OPERATOR, json=grant), 201
        )
        return bearer(issued["credential"]["token"])

    by_lot = await token([c.tin], [])
    for opened, custodian in ((c.tin, c.refiner), (c.ore, c.smelter)):  # the lot and its upstream, in full
        seen = await ok(await stack.custody.get(f"/lots/{opened}", headers=by_lot))
        assert (seen["custodian"], seen["withheld"]) == (custodian.id, [])
    assert (await ok(await stack.custody.get(f"/lots/{c.ore}", headers=by_lot)))["origin"][
        "participant_id"
    ] == c.mine.id
    assert event(await history(stack, by_lot, c.ore), SHIPPED)["withheld"] == []
    for closed in (c.refined, stray.ore):  # made from it, or elsewhere: as if it did not exist
        missing = f"{closed}-NOPE"
        for path in ("/lots/{}", "/lots/{}/history", "/lots/{}/trace"):
            r = await stack.custody.get(path.format(closed), headers=by_lot)
            none = await stack.custody.get(path.format(missing), headers=by_lot)
            assert r.status_code == none.status_code == 404, path
            assert r.text.replace(closed, "X") == none.text.replace(missing, "X"), path
    down = await trace(stack, by_lot, c.ore, "downstream")
    assert {n["lot_id"] for n in down["nodes"]} == {c.ore, c.tin}  # not the refined lot made of it
    listed = await ok(await stack.custody.get("/lots", headers=by_lot))
    assert {i["lot_id"] for i in listed["items"]} == {c.ore, c.tin}

    by_participant = await token([], [c.maker.id])  # what the maker holds or held, and its upstream
    listed = await ok(await stack.custody.get("/lots?limit=500", headers=by_participant))
    assert {i["lot_id"] for i in listed["items"]} == {c.ore, c.tin, c.refined}
    t = await trace(stack, by_participant, c.refined)
    assert node(t, c.ore)["origin"]["participant_id"] == c.mine.id and node(t, c.refined)["custodian"] == c.maker.id
    assert (await stack.custody.get(f"/lots/{stray.refined}", headers=by_participant)).status_code == 404


async def test_a_lot_reached_two_ways_shows_the_later_cut_and_the_asm_group_by_its_policy(stack: Stack) -> None:
    """The trader held the ore and sold it to the smelter, then bought back the tin smelted from it: it sees the
    ore's history up to the smelting (its downstream cut), past its buyer's receipt (its former-holder cut)."""
    lsm, group, trader, smelter = await asyncio.gather(
        stack.party("mine", "CD", region="CD-SK", mining_type="lsm"),
        stack.party("mine", "CD", region="CD-SK", mining_type="asm"),
        stack.party("trader", "RW"),
        stack.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"}),
    )
    body = {"lot_id": f"BAG-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "ore", "mass_kg": 500}
    body |= {"produced_at": "2026-11-01T08:00:00Z", "produced_by": group.id}
    ore = (await ok(await stack.custody.post("/lots", json=body, headers=lsm.auth), 201))["lot_id"]
    await deliver(stack, ore, lsm, trader, 500, 2)
    await deliver(stack, ore, trader, smelter, 500, 4)
    assert kinds(await history(stack, trader, ore))[-1] == (5, RECEIVED)  # a former holder only, so far
    tin = await transform(stack, smelter, "smelting", ore, 300, 210, 6)  # a partial draw: 200 kg of ore left
    await deliver(stack, tin, smelter, trader, 210, 7)
    assert kinds(await history(stack, trader, ore))[-1] == (6, TRANSFORMED)  # and now downstream of it
    # What the smelter did with the rest of the ore afterwards is not the trader's to see.
    used = {"product": "slag test", "mass_kg": 200, "consumed_at": "2026-11-09T08:00:00Z"}
    await ok(await stack.custody.post(f"/lots/{ore}/consumptions", json=used, headers=smelter.auth), 201)
    assert kinds(await history(stack, OPERATOR, ore))[-1] == (7, "custody.lot.consumed")
    assert kinds(await history(stack, trader, ore))[-1] == (6, TRANSFORMED)
    # The ASM group that produced the ore: no counterparty of the trader, default policy: withheld from it, not
    # from the titleholder whose registration names it.
    seen = await lot(stack, trader, ore)
    assert (seen["produced_by"], seen["origin"]["participant_id"]) == (None, lsm.id)
    assert seen["withheld"] == [*CURRENT, "produced_by"]
    assert (await lot(stack, lsm, ore))["produced_by"] == group.id
    registered = event(await history(stack, trader, ore), "custody.lot.registered")
    assert registered["actor"] == lsm.id and registered["withheld"] == ["origin.produced_by"]  # names the group
    assert registered["data"]["origin"]["participant_id"] == lsm.id
    await set_policy(stack, group, "downstream")
    assert (await lot(stack, trader, ore))["produced_by"] == group.id
