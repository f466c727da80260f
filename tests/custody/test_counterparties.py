"""Custody's `GET /counterparties` (issue 24): a participant's trading partners from its own shipments, each way, as
their disclosure policies let a counterparty know them; an `operator`-policy partner is counted, not listed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR
from tests.custody.conftest import Party, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def origin(stack: Stack, mine: Party, mass: float = 100) -> str:
    body = {
        "lot_id": f"BAG-{uuid.uuid4().hex[:10].upper()}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": mass,
        "produced_at": "2026-11-01T08:00:00Z",
        "tag": "T-1",
        "seal": "S-1",
    }
    return str((await ok(await stack.custody.post("/lots", json=body, headers=mine.auth)))["lot_id"])


async def ship(stack: Stack, lot: str, a: Party, b: Party, mass: float, day: int, receive: bool = True) -> None:
    body = {"to": b.id, "mass_kg": mass, "shipped_at": f"2026-11-{day:02d}T08:00:00Z", "seal": "S-1"}
    shipment = await ok(await stack.custody.post(f"/lots/{lot}/shipments", json=body, headers=a.auth))
    if receive:
        got = {"received_at": f"2026-11-{day + 1:02d}T08:00:00Z", "mass_kg": mass, "seal": "S-1"}
        await ok(
            await stack.custody.post(f"/shipments/{shipment['shipment_id']}/receipt", json=got, headers=b.auth), 200
        )


async def counterparties(stack: Stack, who: Party, **params: Any) -> dict[str, Any]:
    return await ok(await stack.custody.get("/counterparties", params=params, headers=who.auth), 200)


async def test_counterparties_each_way_as_their_policies_allow(stack: Stack) -> None:
    trader = await stack.party("trader")
    mine = await stack.party("mine", region="RW-02")
    secret = await stack.party("mine", region="RW-02", disclosure="operator")
    smelter = await stack.party("smelter", country="MY")
    stranger = await stack.party("trader")
    # mine -> trader twice (the second not yet received), secret -> trader, trader -> smelter.
    lot = await origin(stack, mine)
    await ship(stack, lot, mine, trader, 100, day=2)
    lot2 = await origin(stack, mine)
    await ship(stack, lot2, mine, trader, 100, day=4, receive=False)
    hidden_lot = await origin(stack, secret)
    await ship(stack, hidden_lot, secret, trader, 100, day=3)
    await ship(stack, lot, trader, smelter, 100, day=6)

    out = await counterparties(stack, trader)
    assert out["withheld"] == 1  # the operator-policy mine: counted, not listed
    assert out["next_cursor"] is None
    by_id = {c["participant_id"]: c for c in out["items"]}
    assert set(by_id) == {mine.id, smelter.id}
    m = by_id[mine.id]
    assert (m["kind"], m["country"], m["region"], m["mining_type"]) == ("mine", "RW", "RW-02", "asm")
    assert m["name"].startswith("mine ")
    assert (m["shipments_to"], m["shipments_from"], m["last_at"]) == (0, 2, "2026-11-04T08:00:00Z")
    s = by_id[smelter.id]
    assert (s["kind"], s["shipments_to"], s["shipments_from"], s["last_at"]) == (
        "smelter",
        1,
        0,
        "2026-11-07T08:00:00Z",
    )
    assert secret.id not in str(out)

    # The other side sees the trader (default policy: counterparties), and the secret mine its buyer.
    assert [(c["participant_id"], c["shipments_to"]) for c in (await counterparties(stack, mine))["items"]] == [
        (trader.id, 2)
    ]
    assert [c["participant_id"] for c in (await counterparties(stack, secret))["items"]] == [trader.id]
    # Someone who traded with nobody has none.
    assert await counterparties(stack, stranger) == {"items": [], "withheld": 0, "next_cursor": None}

    # Pages of one, in id order, each with the withheld count.
    first = await counterparties(stack, trader, limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"] and first["withheld"] == 1
    second = await counterparties(stack, trader, limit=1, cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    assert [c["participant_id"] for c in first["items"] + second["items"]] == sorted(by_id)


async def test_counterparties_are_for_participant_tokens(stack: Stack) -> None:
    r = await stack.custody.get("/counterparties", headers=OPERATOR)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert (await stack.custody.get("/counterparties")).status_code == 401
    trader = await stack.party("trader")
    assert (await stack.custody.get("/counterparties", params={"limit": 0}, headers=trader.auth)).status_code == 422
    assert (
        await stack.custody.get("/counterparties", params={"cursor": "x" * 201}, headers=trader.auth)
    ).status_code == 422
