"""Products (issue 25): registered by a participant, scoped like its lots, with a GTIN checked for its GS1 check
digit; consumptions name them (own only: another's or an unknown one is the same 404); the event, the trace and the
history carry the product."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from custody.schemas import History, Trace, gtin_validator
from tests.conftest import OPERATOR
from tests.custody.conftest import Party, Stack
from tests.custody.test_event_schemas import read_ours

GTIN13 = "4006381333931"  # a valid EAN-13
GTIN8 = "96385074"  # a valid EAN-8
GTIN12 = "036000291452"  # a valid UPC-A
GTIN14 = "10614141000415"  # a valid GTIN-14


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


async def product(stack: Stack, who: Party, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Controller board")
    return await ok(await stack.custody.post("/products", headers=who.auth, json=body))


@pytest.mark.parametrize("gtin", [GTIN8, GTIN12, GTIN13, GTIN14])
def test_valid_gtins_pass(gtin: str) -> None:
    assert gtin_validator(gtin) == gtin


@pytest.mark.parametrize(
    "gtin", ["4006381333932", "400638133393", "12345", "40063813339311", "4OO6381333931", "٤٠٠٦٣٨١٣٣٣٩٣١"]
)
def test_bad_gtins_fail(gtin: str) -> None:
    with pytest.raises(ValueError, match="GTIN"):
        gtin_validator(gtin)


@pytest.mark.asyncio(loop_scope="session")
async def test_products_crud_scoped_to_their_owner(stack: Stack) -> None:
    maker, other = await stack.party("manufacturer", "DE"), await stack.party("manufacturer", "FR")
    sku = new_id("PCB")
    made = await product(stack, maker, product_id=sku, gtin=GTIN13, mineral="tin", description="Solder SnAgCu")
    pid = made["product_id"]
    assert pid.endswith(f":{sku}") and made["owner"] == maker.id and made["gtin"] == GTIN13
    assert made["mineral"] == "tin" and made["description"] == "Solder SnAgCu"

    # Read: by full id or bare id (the owner's own), listed; another participant: 404 as for none.
    assert (await ok(await stack.custody.get(f"/products/{pid}", headers=maker.auth), 200)) == made
    assert (await ok(await stack.custody.get(f"/products/{sku}", headers=maker.auth), 200))["product_id"] == pid
    mine = await ok(await stack.custody.get("/products", headers=maker.auth), 200)
    assert [p["product_id"] for p in mine["items"]] == [pid]
    for path in (f"/products/{pid}", "/products/NO-SUCH-PRODUCT"):
        r = await stack.custody.get(path, headers=other.auth)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await ok(await stack.custody.get("/products", headers=other.auth), 200))["items"] == []
    # The operator reads any product.
    assert (await ok(await stack.custody.get(f"/products/{pid}", headers=OPERATOR), 200))["owner"] == maker.id
    listed = await ok(await stack.custody.get("/products", params={"owner": maker.id}, headers=OPERATOR), 200)
    assert [p["product_id"] for p in listed["items"]] == [pid]

    # The same id again: 409; the same GTIN on another product of the owner: 409; another owner may use it.
    r = await stack.custody.post("/products", headers=maker.auth, json={"product_id": sku, "name": "again"})
    assert r.status_code == 409, r.text
    r = await stack.custody.post("/products", headers=maker.auth, json={"name": "twin", "gtin": GTIN13})
    assert r.status_code == 409 and r.json()["product_id"] == pid, r.text
    await product(stack, other, product_id=sku, gtin=GTIN13)
    assert await stack.count("SELECT count(*) FROM products WHERE owner = $1", maker.id) == 1

    # Bad GTINs: 422 naming body.gtin, nothing written.
    for bad in ("4006381333932", "123", "abcdefgh"):
        r = await stack.custody.post("/products", headers=maker.auth, json={"name": "x", "gtin": bad})
        assert r.status_code == 422, r.text
        assert any(e["where"] == "body.gtin" for e in r.json()["errors"]), r.text
    assert await stack.count("SELECT count(*) FROM products WHERE owner = $1", maker.id) == 1
    # The operator cannot register one (participants do).
    r = await stack.custody.post("/products", headers=OPERATOR, json={"name": "x"})
    assert r.status_code == 403

    # PATCH: name and GTIN change; a GTIN of another own product is 409; another's product is 404.
    second = await product(stack, maker, gtin=GTIN8)
    changed = await ok(
        await stack.custody.patch(f"/products/{pid}", headers=maker.auth, json={"name": "Board rev B", "gtin": GTIN12}),
        200,
    )
    assert (changed["name"], changed["gtin"], changed["description"]) == ("Board rev B", GTIN12, "Solder SnAgCu")
    assert changed["registered_at"] == made["registered_at"]
    r = await stack.custody.patch(f"/products/{pid}", headers=maker.auth, json={"gtin": GTIN8})
    assert r.status_code == 409 and r.json()["product_id"] == second["product_id"], r.text
    r = await stack.custody.patch(f"/products/{pid}", headers=other.auth, json={"name": "mine now"})
    assert r.status_code == 404, r.text
    r = await stack.custody.patch(f"/products/{pid}", headers=maker.auth, json={"gtin": "4006381333932"})
    assert r.status_code == 422
    r = await stack.custody.patch(f"/products/{pid}", headers=maker.auth, json={"name": None})
    assert r.status_code == 422
    cleared = await ok(await stack.custody.patch(f"/products/{pid}", headers=maker.auth, json={"gtin": None}), 200)
    assert cleared["gtin"] is None and cleared["name"] == "Board rev B"

    # Each change is an event keyed by the product, with the product whole.
    records = await read_ours(stack, {pid}, 3)
    types = [dict(r.headers)["ce_type"].decode() for r in records]
    assert types == ["custody.product.registered", "custody.product.updated", "custody.product.updated"]
    data = [orjson.loads(r.value) for r in records]
    assert data[0] == {
        "product_id": pid,
        "name": "Controller board",
        "gtin": GTIN13,
        "description": "Solder SnAgCu",
        "by": maker.id,
        "by_kind": "manufacturer",
        "registered_at": data[0]["registered_at"],
    }
    assert [(d["name"], d["gtin"]) for d in data[1:]] == [("Board rev B", GTIN12), ("Board rev B", None)]
    assert {d["registered_at"] for d in data} == {data[0]["registered_at"]}


@pytest.mark.asyncio(loop_scope="session")
async def test_an_idempotency_key_replays_a_product_registration(stack: Stack) -> None:
    maker = await stack.party("manufacturer", "DE")
    headers = {**maker.auth, "Idempotency-Key": new_id("K")}
    body = {"product_id": new_id("SKU"), "name": "Phone"}
    first = await ok(await stack.custody.post("/products", headers=headers, json=body))
    again = await stack.custody.post("/products", headers=headers, json=body)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first
    assert await stack.count("SELECT count(*) FROM products WHERE owner = $1", maker.id) == 1


async def _supply(stack: Stack) -> tuple[Party, Party, str]:
    """A smelter's tin, shipped to a manufacturer and received: (smelter, maker, the tin lot)."""
    smelter, maker = await stack.party("smelter", "MY"), await stack.party("manufacturer", "DE")
    body = {"mineral": "tin", "form": "metal", "mass_kg": 100, "received_at": "2026-11-03T12:00:00Z",
            "origin": {"country": "MM"}, "supplier": {"name": "Andaman Metals Trading"}}  # fmt: skip
    lot = (await ok(await stack.custody.post("/lots/external", headers=smelter.auth, json=body)))["lot_id"]
    await stack.move(lot, smelter, maker, 100, "2026-11-04T08:00:00Z", "2026-11-05T08:00:00Z")
    return smelter, maker, lot


@pytest.mark.asyncio(loop_scope="session")
async def test_a_consumption_names_the_callers_own_product(stack: Stack) -> None:
    _, maker, lot = await _supply(stack)
    other = await stack.party("manufacturer", "FR")
    sku = new_id("PCB")
    mine = await product(stack, maker, product_id=sku, name="Board PCB-7731", gtin=GTIN13)
    theirs = await product(stack, other, name="Their board")
    at = "2026-11-06T08:00:00Z"

    # Another's product, an unknown one: the same 404; neither product_id nor product: 422. Nothing consumed.
    answers = []
    for pid in (theirs["product_id"], f"{mine['product_id']}-NOPE", "NOPE"):
        r = await stack.custody.post(
            f"/lots/{lot}/consumptions", headers=maker.auth, json={"product_id": pid, "mass_kg": 1, "consumed_at": at}
        )
        assert r.status_code == 404, r.text
        answers.append(r.json()["title"])
    assert len(set(answers)) == 1
    r = await stack.custody.post(
        f"/lots/{lot}/consumptions", headers=maker.auth, json={"mass_kg": 1, "consumed_at": at}
    )
    assert r.status_code == 422, r.text
    assert await stack.count("SELECT count(*) FROM consumptions WHERE lot_id = $1", lot) == 0

    # Own product, by its bare id, with a batch note; then a free-text one.
    used = await ok(
        await stack.custody.post(
            f"/lots/{lot}/consumptions",
            headers=maker.auth,
            json={"product_id": sku, "product": "batch 49", "mass_kg": 2.5, "consumed_at": at},
        )
    )
    assert (used["product_id"], used["product"]) == (mine["product_id"], "batch 49")
    free = await ok(
        await stack.custody.post(
            f"/lots/{lot}/consumptions",
            headers=maker.auth,
            json={"product": "prototype", "mass_kg": 1, "consumed_at": at},
        )
    )
    assert free["product_id"] is None
    assert await stack.count("SELECT count(*) FROM consumptions WHERE product_id = $1", mine["product_id"]) == 1

    # The event carries product_id (null for free text).
    records = await read_ours(stack, {lot}, 5)
    consumed = [orjson.loads(r.value) for r in records if dict(r.headers)["ce_type"] == b"custody.lot.consumed"]
    assert sorted((c["product_id"] or "", c["product"]) for c in consumed) == sorted(
        [(mine["product_id"], "batch 49"), ("", "prototype")]
    )

    # The trace downstream names the product and its name; the history too (its current name).
    trace = await ok(
        await stack.custody.get(f"/lots/{lot}/trace", params={"direction": "downstream"}, headers=maker.auth), 200
    )
    Trace.model_validate(trace)
    named = {(p["product_id"], p["product_name"], p["product"]) for p in trace["products"]}
    assert named == {(mine["product_id"], "Board PCB-7731", "batch 49"), (None, None, "prototype")}
    history = await ok(await stack.custody.get(f"/lots/{lot}/history", headers=maker.auth), 200)
    History.model_validate(history)
    assert history["chain_valid"] is True
    assert history["products"] == {mine["product_id"]: "Board PCB-7731"}
    ev = next(e for e in history["events"] if e["data"].get("product") == "batch 49")
    assert ev["data"]["product_id"] == mine["product_id"]
    # The operator sees the same.
    trace = await ok(
        await stack.custody.get(f"/lots/{lot}/trace", params={"direction": "downstream"}, headers=OPERATOR), 200
    )
    assert {p["product_id"] for p in trace["products"]} == {mine["product_id"], None}


@pytest.mark.asyncio(loop_scope="session")
async def test_product_ids_are_scoped_and_listed_page_by_page(stack: Stack) -> None:
    maker, other = await stack.party("manufacturer", "DE"), await stack.party("manufacturer", "FR")
    theirs = await product(stack, other)
    # An id under another participant's prefix cannot be created: 422 saying how product ids look.
    r = await stack.custody.post(
        "/products", headers=maker.auth, json={"product_id": theirs["product_id"], "name": "x"}
    )
    assert r.status_code == 422 and "product ids are scoped" in r.text, r.text
    made = [await product(stack, maker, name=f"P{i}") for i in range(3)]
    assert all(p["product_id"].split(":", 1)[1].startswith("PRD-") for p in made)  # generated local ids
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await ok(await stack.custody.get("/products", params=params, headers=maker.auth), 200)
        seen += [p["product_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["product_id"] for p in made]
    # Another owner's filter from a participant matches nothing.
    r = await ok(await stack.custody.get("/products", params={"owner": other.id}, headers=maker.auth), 200)
    assert r["items"] == []
