"""Issue 22, part 1: one participant's request never stops the pipeline for the others.

Before: a refused consumption whose `product` was 1,200,000 spaces + "x" passed the length check (run after
stripping), its refusal stored the raw body, the relay's producer refused the 1.2 MB message and retried that oldest
row forever: custody kept answering 201 while audit saw nothing more. Now every link holds: the body limit answers
413 before reading it, a shorter padded value is refused on what was sent (422), and a row the broker can never take
is dead-lettered while the next rows go out. After each attack an honest participant's write is flagged within
seconds."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import orjson

from tests.audit.conftest import System
from tests.audit.test_scenario import cahra, lot_body, ok
from tests.helpers import wait_for

FLAG_WITHIN_S = 10.0  # the issue asks for "within seconds"; typical here is well under one


async def honest_write_is_flagged(s: System, mine: Any) -> float:
    """An honest mine's lot in a CAHRA region, uncertified: the time until audit flags it."""
    lot = await ok(await s.custody.post("/lots", headers=mine.auth, json=lot_body(5)))
    start = time.monotonic()

    async def flagged() -> bool:
        rows = await s.audit_rows(
            "SELECT 1 FROM flags WHERE rule = 'uncertified_asm_in_cahra' AND $1 = ANY(lot_ids)", lot["lot_id"]
        )
        return bool(rows)

    await wait_for(flagged, timeout_s=FLAG_WITHIN_S, what="the honest participant's flag", interval_s=0.05)
    return time.monotonic() - start


async def custody_outbox_empty(s: System) -> None:
    async def empty() -> bool:
        return await s.count("SELECT count(*) FROM outbox") == 0

    await wait_for(empty, timeout_s=FLAG_WITHIN_S, what="custody's outbox to drain")


async def test_the_padded_refusal_then_an_honest_write_is_flagged_within_seconds(system: System) -> None:
    s = system
    await cahra(s, "CD", "CD-SK")
    attacker = await s.party("mine", "CD", region="CD-SK", mining_type="asm")
    honest = await s.party("mine", "CD", region="CD-SK", mining_type="asm")
    lot = await ok(await s.custody.post("/lots", headers=attacker.auth, json=lot_body(10)))

    # The request: a consumption that will be refused (more than remains), product padded to 1.2 MB.
    padded = {"product": " " * 1_200_000 + "x", "mass_kg": 1000, "consumed_at": "2026-03-02T08:00:00Z"}
    r = await s.custody.post(f"/lots/{lot['lot_id']}/consumptions", headers=attacker.auth, json=padded)
    assert r.status_code == 413, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json")
    # Under the body limit, the length is checked on what was sent, not on what is left after stripping.
    padded["product"] = " " * 200_000 + "x"
    r = await s.custody.post(f"/lots/{lot['lot_id']}/consumptions", headers=attacker.auth, json=padded)
    assert r.status_code == 422, r.text[:300]
    assert "product" in r.text
    # Nothing of either request is waiting to be published, nothing was dead-lettered, and the others go on.
    await custody_outbox_empty(s)
    assert await s.count("SELECT count(*) FROM dead_letter") == 0
    assert await honest_write_is_flagged(s, honest) < FLAG_WITHIN_S


async def test_a_row_the_broker_refuses_is_dead_lettered_and_the_next_rows_go_out(system: System) -> None:
    """Whatever put it there (an older version, a bug), an outbox row too large for the broker no longer stops the
    relay: it is set aside with its reason and the honest participant's next write still reaches audit."""
    s = system
    honest = await s.party("mine", "CD", region="CD-SK", mining_type="asm")
    event_id = str(uuid.uuid4())
    conn = await asyncpg.connect(s.custody_dsn)
    try:
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data) "
            "VALUES ($1, 'custody.events', 'LOT-HUGE', 'custody.lot.registered', '/custody', 'LOT-HUGE', now(), "
            "NULL, $2::jsonb)",
            event_id,
            orjson.dumps({"lot_id": "LOT-HUGE", "product": "x" * 1_200_000}).decode(),
        )
    finally:
        await conn.close()
    took = await honest_write_is_flagged(s, honest)
    assert took < FLAG_WITHIN_S
    await custody_outbox_empty(s)
    assert await s.count("SELECT count(*) FROM dead_letter WHERE event_id = $1", event_id) == 1
