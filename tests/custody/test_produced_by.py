"""`produced_by` on POST /lots: an industrial titleholder (lsm) selling material an ASM group produced on or next to
its title names the group (IRMA Standard chapter 3.6). It is stored, shown in the lot and in
custody.lot.registered's origin; custody checks what it can know of the group (a registered mine, asm)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
import pytest

from tests.custody.conftest import Party, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def lot(**extra: Any) -> dict[str, Any]:
    return {
        "lot_id": f"LOT-PB-{uuid.uuid4().hex[:10]}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": 500,
        "produced_at": "2026-11-20T08:00:00Z",
        **extra,
    }


async def event_origin(stack: Stack, lot_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        data = await conn.fetchval(
            "SELECT data::text FROM lot_events WHERE lot_id = $1 AND type = 'custody.lot.registered'", lot_id
        )
    finally:
        await conn.close()
    return orjson.loads(data)["origin"]  # type: ignore[no-any-return]


async def test_a_titleholder_names_the_asm_group_that_produced_a_lot(stack: Stack) -> None:
    lsm = await stack.party("mine", "CD", region="CD-SK", mining_type="lsm")
    group = await stack.party("mine", "CD", region="CD-SK", mining_type="asm")
    body = lot(produced_by=group.id)
    r = await stack.custody.post("/lots", json=body, headers=lsm.auth)
    assert r.status_code == 201, r.text
    assert r.json()["produced_by"] == group.id
    assert r.json()["origin"]["participant_id"] == lsm.id  # the titleholder registered it and holds it
    again = await stack.custody.get(f"/lots/{r.json()['lot_id']}", headers=lsm.auth)
    assert again.json()["produced_by"] == group.id
    origin = await event_origin(stack, r.json()["lot_id"])
    assert (origin["participant_id"], origin["mining_type"], origin["produced_by"]) == (lsm.id, "lsm", group.id)

    own = lot()  # its own production: nothing named, nothing in the event
    r = await stack.custody.post("/lots", json=own, headers=lsm.auth)
    assert r.status_code == 201, r.text
    assert r.json()["produced_by"] is None
    assert "produced_by" not in await event_origin(stack, r.json()["lot_id"])


async def test_what_custody_can_check_of_the_group_is_checked_and_nothing_is_written(stack: Stack) -> None:
    lsm = await stack.party("mine", "CD", region="CD-SK", mining_type="lsm")
    other_lsm = await stack.party("mine", "CD", region="CD-SK", mining_type="lsm")
    group = await stack.party("mine", "CD", region="CD-SK", mining_type="asm")
    trader = await stack.party("trader")

    async def refused(who: Party, produced_by: Any, status: int = 422) -> None:
        body = lot(produced_by=produced_by)
        r = await stack.custody.post("/lots", json=body, headers=who.auth)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "produced_by" in r.text, r.text
        assert await stack.count("SELECT count(*) FROM lots WHERE lot_id = $1", body["lot_id"]) == 0

    await refused(group, other_lsm.id)  # an ASM mine does not sell another's material as a titleholder
    await refused(group, group.id)
    await refused(lsm, lsm.id)  # itself
    await refused(lsm, other_lsm.id)  # an industrial mine is no ASM group
    await refused(lsm, trader.id)
    await refused(lsm, "nobody-" + uuid.uuid4().hex)
    await refused(lsm, "x" * 101)  # bounded like every participant id
    await refused(lsm, "")
    await refused(lsm, 42)


async def test_the_openapi_and_asyncapi_document_produced_by(stack: Stack) -> None:
    openapi = (await stack.custody.get("/openapi.json")).json()
    assert "produced_by" in openapi["components"]["schemas"]["LotCreate"]["properties"]
    asyncapi = (await stack.custody.get("/asyncapi.json")).json()
    assert "produced_by" in orjson.dumps(asyncapi).decode()
