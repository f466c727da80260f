"""Issue 9's authorization table: every kind of participant tries every custody write on a lot it must not touch,
and every read of data it must not see; all are refused (403/404/409 as the services define them, as problem+json)
and nothing is written (the lots keep their custodian, remaining mass, status and event count).

The stack: the registry as its own process (tokens, participant events), custody and audit in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from tests.conftest import OPERATOR, registry_process, serve_in_process
from tests.custody.conftest import Party, Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

KINDS = ("mine", "trader", "smelter", "refiner", "component_manufacturer", "manufacturer", "recycler")
ACTIONS = (
    "ship",
    "receive",
    "transform",
    "consume",
    "get_lot",
    "get_history",
    "get_trace",
    "audit_flag",
    "audit_risk",
    "audit_acknowledge",
    "audit_respond",
    "audit_resolve",
    "audit_reopen",
)
T0 = "2026-11-01T08:00:00Z"


@dataclass
class World:
    stack: Stack
    audit: httpx.AsyncClient
    attackers: dict[str, Party]
    lot: str  # held by its mine; nobody else ever held it
    shipped_lot: str  # in transit from its mine to a trader
    shipment: str  # addressed to that trader
    flagged_lot: str  # received short by the trader: audit flagged it
    flag: str
    parties: dict[str, Party]  # the mine and the trader the flag names, by id


async def _ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def _party(stack: Stack, kind: str) -> Party:
    extra: dict[str, Any] = {}
    if kind == "smelter":
        extra["identifiers"] = {"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"}
    return await stack.party(kind, "RW", **extra)


async def _register(stack: Stack, mine: Party, mass: float) -> str:
    body = {"lot_id": f"AUTHZ-{uuid.uuid4().hex[:10]}", "mineral": "tin", "form": "ore", "mass_kg": mass}
    lot = await _ok(await stack.custody.post("/lots", json={**body, "produced_at": T0}, headers=mine.auth))
    return str(lot["lot_id"])


async def _ship(stack: Stack, lot: str, frm: Party, to: Party, mass: float) -> str:
    body = {"to": to.id, "mass_kg": mass, "shipped_at": "2026-11-02T08:00:00Z", "transit_countries": ["RW"]}
    return str(
        (await _ok(await stack.custody.post(f"/lots/{lot}/shipments", json=body, headers=frm.auth)))["shipment_id"]
    )


@pytest.fixture(scope="module")
async def world(database_urls: dict[str, str]) -> AsyncIterator[World]:
    async with registry_process(database_urls, "authz") as reg:
        custody = custody_app(
            CustodySettings(
                database_url=database_urls["custody"], consumer_group=f"custody-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        audit = audit_app(
            AuditSettings(
                database_url=database_urls["audit"], consumer_group=f"audit-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(audit) as a,
        ):
            stack = Stack(registry, c, database_urls["custody"].replace("+asyncpg", ""), reg.prefix)
            owner = await _party(stack, "mine")
            buyer = await _party(stack, "trader")
            attackers = {k: await _party(stack, k) for k in KINDS}
            lot = await _register(stack, owner, 500)
            shipped_lot = await _register(stack, owner, 300)
            shipment = await _ship(stack, shipped_lot, owner, buyer, 300)
            flagged_lot = await _register(stack, owner, 100)
            short = await _ship(stack, flagged_lot, owner, buyer, 100)
            receipt = {"received_at": "2026-11-05T08:00:00Z", "mass_kg": 80}
            await _ok(await c.post(f"/shipments/{short}/receipt", json=receipt, headers=buyer.auth), 200)
            flags: list[dict[str, Any]] = []

            async def flagged() -> bool:
                r = await a.get("/flags", params={"lot_id": flagged_lot}, headers=OPERATOR)
                flags[:] = r.json()["items"] if r.status_code == 200 else []
                return bool(flags)

            await wait_for(flagged, timeout_s=30, what=f"audit to flag the short receipt of {flagged_lot}")
            parties = {owner.id: owner, buyer.id: buyer}
            yield World(stack, a, attackers, lot, shipped_lot, shipment, flagged_lot, str(flags[0]["id"]), parties)


async def _state(w: World, lot: str) -> tuple[Any, ...]:
    got = await _ok(await w.stack.custody.get(f"/lots/{lot}", headers=OPERATOR), 200)
    history = await _ok(await w.stack.custody.get(f"/lots/{lot}/history", headers=OPERATOR), 200)
    return got["custodian"], got["remaining_kg"], got["status"], len(history["events"])


async def _attempt(w: World, who: Party, action: str) -> httpx.Response:
    c, h = w.stack.custody, who.auth
    match action:
        case "ship":
            body = {"to": who.id, "mass_kg": 10, "shipped_at": "2026-11-03T08:00:00Z"}
            return await c.post(f"/lots/{w.lot}/shipments", json=body, headers=h)
        case "receive":
            body = {"received_at": "2026-11-05T08:00:00Z", "mass_kg": 300}
            return await c.post(f"/shipments/{w.shipment}/receipt", json=body, headers=h)
        case "transform":
            body = {
                "kind": "smelting",
                "occurred_at": "2026-11-06T08:00:00Z",
                "inputs": [{"lot_id": w.lot, "mass_kg": 100}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 60}],
            }
            return await c.post("/transformations", json=body, headers=h)
        case "consume":
            body = {"product": "SKU-X", "mass_kg": 10, "consumed_at": "2026-11-07T08:00:00Z"}
            return await c.post(f"/lots/{w.lot}/consumptions", json=body, headers=h)
        case "get_lot":
            return await c.get(f"/lots/{w.lot}", headers=h)
        case "get_history":
            return await c.get(f"/lots/{w.lot}/history", headers=h)
        case "get_trace":
            return await c.get(f"/lots/{w.lot}/trace", headers=h)
        case "audit_flag":
            return await w.audit.get(f"/flags/{w.flag}", headers=h)
        case "audit_risk":
            return await w.audit.get(f"/lots/{w.flagged_lot}/risk", headers=h)
        case "audit_acknowledge" | "audit_respond" | "audit_resolve" | "audit_reopen":
            verb = action.removeprefix("audit_")
            return await w.audit.post(f"/flags/{w.flag}/{verb}", json={"note": "mine to decide"}, headers=h)
    raise AssertionError(action)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kind", KINDS)
async def test_refused_and_nothing_written(world: World, kind: str, action: str) -> None:
    lots = (world.lot, world.shipped_lot, world.flagged_lot)
    before = [await _state(world, lot) for lot in lots]
    r = await _attempt(world, world.attackers[kind], action)
    assert r.status_code in (403, 404, 409), f"{kind} {action}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == r.status_code and body["type"] and body["title"], body
    assert [await _state(world, lot) for lot in lots] == before, f"{kind} {action} changed a lot"
    flag = await _ok(await world.audit.get(f"/flags/{world.flag}", headers=OPERATOR), 200)
    assert (flag["status"], flag["history"]) == ("open", []), f"{kind} {action} decided on the flag"


@pytest.mark.parametrize("action", ["audit_resolve", "audit_reopen"])
async def test_the_parties_of_a_flag_never_resolve_it(world: World, action: str) -> None:
    """The mine the short receipt is about, and the trader holding the lot: 403 (they see the flag)."""
    flag = await _ok(await world.audit.get(f"/flags/{world.flag}", headers=OPERATOR), 200)
    assert len(flag["participants"]) == 2
    for pid in flag["participants"]:
        party = world.parties[pid]
        r = await _attempt(world, party, action)
        assert r.status_code == 403, f"{party.kind} {action}: {r.status_code} {r.text}"
        assert "compliance officer" in r.json()["detail"]
    after = await _ok(await world.audit.get(f"/flags/{world.flag}", headers=OPERATOR), 200)
    assert (after["status"], after["history"]) == ("open", [])
