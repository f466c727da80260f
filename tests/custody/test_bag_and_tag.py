"""Bag-and-tag in custody: a shipment carries the bag's tag and the regions it passes through, a receipt the tag as
found on arrival; both are stored, answered and published, on the optimistic write path and under the locks alike.
A region outside the shipment's transit countries, or no region at all, is a 422 naming `transit_regions`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from custody import repository
from tests.custody.conftest import Party, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = "2026-11-01T08:00:00Z"
SHIPPED_AT = "2026-11-02T08:00:00Z"
RECEIVED_AT = "2026-11-05T08:00:00Z"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def register(stack: Stack, mine: Party, tag: str = "TAG-1", seal: str = "S-1") -> str:
    body = {
        "lot_id": f"BAG-{uuid.uuid4().hex[:10].upper()}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": 100,
        "produced_at": T0,
        "tag": tag,
        "seal": seal,
    }
    return str((await ok(await stack.custody.post("/lots", json=body, headers=mine.auth)))["lot_id"])


async def ship(stack: Stack, who: Party, lot: str, to: Party, **over: Any) -> httpx.Response:
    body = {"to": to.id, "mass_kg": 100, "shipped_at": SHIPPED_AT, "seal": "S-1", **over}
    return await stack.custody.post(f"/lots/{lot}/shipments", json=body, headers=who.auth)


async def receive(stack: Stack, who: Party, shipment: str, **over: Any) -> httpx.Response:
    body = {"received_at": RECEIVED_AT, "mass_kg": 100, "seal": "S-1", **over}
    return await stack.custody.post(f"/shipments/{shipment}/receipt", json=body, headers=who.auth)


async def row(stack: Stack, shipment_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        r = await conn.fetchrow(
            "SELECT tag, received_tag, transit_regions, transit_countries FROM shipments WHERE shipment_id = $1",
            shipment_id,
        )
    finally:
        await conn.close()
    assert r is not None
    return r


async def events(stack: Stack, who: Party, lot: str) -> dict[str, dict[str, Any]]:
    history = await ok(await stack.custody.get(f"/lots/{lot}/history", headers=who.auth), 200)
    return {e["type"]: e["data"] for e in history["events"]}


@pytest.fixture(params=["optimistic", "under_locks"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The write path a ship and a receipt take: without locks (`persist_unless_changed`, the usual one) or, should
    that decline, under the locks (`persist`)."""
    if request.param == "under_locks":

        async def declined(*args: Any, **kwargs: Any) -> bool:
            return False

        monkeypatch.setattr(repository, "persist_unless_changed", declined)
    return str(request.param)


async def test_the_tag_and_transit_regions_travel_with_the_shipment_and_the_receipt(stack: Stack, path: str) -> None:
    mine, trader = await stack.party("mine"), await stack.party("trader")
    lot = await register(stack, mine, tag="TAG-A")
    shipment = await ok(
        await ship(stack, mine, lot, trader, tag="TAG-A", transit_countries=["cd", "RW"], transit_regions=["cd-nk"])
    )
    assert shipment["tag"] == "TAG-A"
    assert shipment["transit_countries"] == ["CD", "RW"]
    assert shipment["transit_regions"] == ["CD-NK"]
    assert shipment["received_tag"] is None
    sid = shipment["shipment_id"]
    r = await row(stack, sid)
    assert (r["tag"], r["received_tag"], list(r["transit_regions"])) == ("TAG-A", None, ["CD-NK"])

    received = await ok(await receive(stack, trader, sid, tag="TAG-B"), 200)
    assert (received["tag"], received["received_tag"], received["transit_regions"]) == ("TAG-A", "TAG-B", ["CD-NK"])
    r = await row(stack, sid)
    assert (r["tag"], r["received_tag"]) == ("TAG-A", "TAG-B")

    data = await events(stack, trader, lot)
    shipped = data["custody.lot.shipped"]
    assert (shipped["tag"], shipped["transit_countries"], shipped["transit_regions"]) == (
        "TAG-A",
        ["CD", "RW"],
        ["CD-NK"],
    )
    got = data["custody.lot.received"]
    assert (got["tag"], got["shipped"]["tag"], got["seal"], got["shipped"]["seal"]) == ("TAG-B", "TAG-A", "S-1", "S-1")


async def test_without_tag_or_regions_a_shipment_says_so(stack: Stack, path: str) -> None:
    mine, trader = await stack.party("mine"), await stack.party("trader")
    lot = await register(stack, mine)
    shipment = await ok(await ship(stack, mine, lot, trader, seal=None))
    assert (shipment["tag"], shipment["transit_regions"]) == (None, [])
    received = await ok(await receive(stack, trader, shipment["shipment_id"], seal=None), 200)
    assert (received["tag"], received["received_tag"]) == (None, None)
    data = await events(stack, trader, lot)
    assert (data["custody.lot.shipped"]["tag"], data["custody.lot.shipped"]["transit_regions"]) == (None, [])
    assert (data["custody.lot.received"]["tag"], data["custody.lot.received"]["shipped"]["tag"]) == (None, None)
    r = await row(stack, shipment["shipment_id"])
    assert (r["tag"], r["received_tag"], list(r["transit_regions"])) == (None, None, [])


def where(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["where"] for e in r.json()["errors"]]


async def test_transit_regions_are_checked_and_a_refused_shipment_writes_nothing(stack: Stack) -> None:
    mine, trader = await stack.party("mine"), await stack.party("trader")
    lot = await register(stack, mine)
    # a region whose country is not a transit country: the region names where in a named country it passes
    r = await ship(stack, mine, lot, trader, transit_countries=["RW"], transit_regions=["CD-NK"])
    assert where(r) == ["body.transit_regions"]
    assert "CD-NK" in r.json()["detail"] and "transit_countries" in r.json()["detail"]
    assert where(await ship(stack, mine, lot, trader, transit_regions=["CD-NK"])) == ["body.transit_regions"]
    # not an ISO 3166-2 region, not a code at all, too many
    assert where(await ship(stack, mine, lot, trader, transit_countries=["CD"], transit_regions=["CD-XX"])) == [
        "body.transit_regions.0"
    ]
    assert where(await ship(stack, mine, lot, trader, transit_countries=["CD"], transit_regions=["Kivu"])) == [
        "body.transit_regions.0"
    ]
    many = ["CD-NK"] * 31
    assert where(await ship(stack, mine, lot, trader, transit_countries=["CD"], transit_regions=many)) == [
        "body.transit_regions"
    ]
    # a tag longer than a seal may be
    assert where(await ship(stack, mine, lot, trader, tag="T" * 101)) == ["body.tag"]
    # nothing of those was written: the lot is still the mine's, and ships
    assert await stack.count("SELECT count(*) FROM shipments WHERE lot_id = $1", lot) == 0
    # a renamed subdivision is kept under its current code
    shipment = await ok(
        await ship(stack, mine, lot, trader, transit_countries=["IN", "CD"], transit_regions=["IN-CT", "CD-NK"])
    )
    assert shipment["transit_regions"] == ["IN-CG", "CD-NK"]


async def test_a_receipt_tag_is_bounded(stack: Stack) -> None:
    mine, trader = await stack.party("mine"), await stack.party("trader")
    lot = await register(stack, mine)
    shipment = await ok(await ship(stack, mine, lot, trader, tag="TAG-1"))
    assert where(await receive(stack, trader, shipment["shipment_id"], tag="")) == ["body.tag"]
    assert where(await receive(stack, trader, shipment["shipment_id"], tag="T" * 101)) == ["body.tag"]
    assert await stack.count("SELECT count(*) FROM shipments WHERE status = 'received' AND lot_id = $1", lot) == 0
    received = await ok(await receive(stack, trader, shipment["shipment_id"], tag=" TAG-1 "), 200)
    assert received["received_tag"] == "TAG-1"
