"""Audit re-judges what a custody correction affected (docs/corrections.md), on the whole system: the flags whose
grounds the corrected event is show the correction and stay as a person left them, a correction of a high-risk
flag's grounds is a `record_corrected` flag, a voided shipment no longer counts, and a replay rebuilds the same."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from audit.config import Settings as AuditSettings
from audit.projection import statements
from audit.replay import replay
from shared.topics import AUDIT_DECISIONS
from tests.audit.conftest import System
from tests.conftest import ENV, OPERATOR, _admin, _migrate, bearer, pg_url
from tests.custody.conftest import Party
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0, T1 = "2026-11-01T08:00:00Z", "2026-11-02T08:00:00Z"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def evidence(row: asyncpg.Record) -> dict[str, Any]:
    v = row["evidence"]
    return orjson.loads(v) if isinstance(v, str) else v  # type: ignore[no-any-return]


async def flag_of(s: System, rule: str, cause: str) -> asyncpg.Record | None:
    rows = await s.audit_rows("SELECT * FROM flags WHERE rule = $1 AND cause = $2", rule, cause)
    return rows[0] if rows else None


async def shipped_under_the_wrong_seal(s: System) -> tuple[Party, str, dict[str, Any], str]:
    """A mine registers a lot under seal S-1 and ships it under S-2 (a high `seal_mismatch` flag): the mine, the
    lot, the shipment, the shipped event's id, once audit raised the flag."""
    mine, trader = await s.party("mine", "RW"), await s.party("trader", "RW")
    body = {"lot_id": f"BAG-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "ore", "mass_kg": 500, "seal": "S-1"}
    lot = (await ok(await s.custody.post("/lots", headers=mine.auth, json={**body, "produced_at": T0})))["lot_id"]
    shipment = await ok(
        await s.custody.post(
            f"/lots/{lot}/shipments",
            headers=mine.auth,
            json={"to": trader.id, "mass_kg": 500, "shipped_at": T1, "seal": "S-2", "max_transit_days": 60},
        )
    )
    history = await ok(await s.custody.get(f"/lots/{lot}/history", headers=mine.auth), 200)
    (shipped,) = [e["event_id"] for e in history["events"] if e["type"] == "custody.lot.shipped"]

    async def flagged() -> bool:
        return await flag_of(s, "seal_mismatch", f"{lot}:first_shipment") is not None

    await wait_for(flagged, timeout_s=60, what="the seal_mismatch flag", interval_s=0.2)
    return mine, lot, shipment, shipped


async def corrected(s: System, mine: Party, lot: str, event_id: str, reason: str, note: str) -> dict[str, Any]:
    done = await ok(
        await s.custody.post(
            f"/lots/{lot}/corrections", headers=mine.auth, json={"event_id": event_id, "reason": reason, "note": note}
        )
    )

    async def seen() -> bool:
        return bool(await s.audit_rows("SELECT 1 FROM corrections WHERE correction_id = $1", done["correction_id"]))

    await wait_for(seen, timeout_s=60, what="audit to receive the correction", interval_s=0.2)
    return done


async def test_a_corrected_shipment_marks_its_flags_raises_record_corrected_and_no_longer_counts(
    system: System,
) -> None:
    s = system
    mine, lot, shipment, shipped = await shipped_under_the_wrong_seal(s)
    before = await flag_of(s, "seal_mismatch", f"{lot}:first_shipment")
    assert before is not None
    done = await corrected(s, mine, lot, shipped, "did_not_occur", "Entered against the wrong lot.")
    assert done["effect"] == "voided_shipment"

    seal = await flag_of(s, "seal_mismatch", f"{lot}:first_shipment")
    assert seal is not None
    mark = evidence(seal)["correction"]
    assert (mark["correction_id"], mark["event_id"], mark["reason"], mark["note"], mark["declared_by"]) == (
        done["correction_id"],
        shipped,
        "did_not_occur",
        "Entered against the wrong lot.",
        mine.id,
    )
    assert mark["effect"] == "voided_shipment" and mark["shipment_id"] == shipment["shipment_id"]
    assert datetime.fromisoformat(mark["declared_at"]) == datetime.fromisoformat(done["declared_at"])
    # the party a finding is about never decides it: open as before, the summary says a person reviews
    assert seal["status"] == before["status"] == "open"
    assert seal["summary"] == before["summary"] + " [grounds corrected by the party (did_not_occur); review]"
    kept = await s.audit_rows("SELECT evidence FROM flag_evidence_history WHERE flag_id = $1", seal["id"])
    assert [evidence(r) for r in kept] == [evidence(before)]

    shown = await ok(await s.audit.get(f"/flags/{seal['id']}", headers=OPERATOR), 200)
    assert shown["evidence"]["correction"]["note"] == "Entered against the wrong lot."

    record = await flag_of(s, "record_corrected", done["correction_id"])
    assert record is not None
    assert (record["severity"], record["lot_id"], list(record["participants"]), record["status"]) == (
        "high",
        lot,
        [mine.id],
        "open",
    )
    assert [f["id"] for f in evidence(record)["flags"]] == [seal["id"]]

    # the voided shipment no longer counts: never overdue, whenever the check runs
    rows = await s.audit_rows("SELECT status FROM shipments WHERE shipment_id = $1", shipment["shipment_id"])
    assert [r["status"] for r in rows] == ["voided"]
    conn = await asyncpg.connect(s.audit_dsn)
    try:
        later = await statements.overdue_shipments(conn, datetime(2030, 1, 1, tzinfo=UTC), 30, 0)
    finally:
        await conn.close()
    assert shipment["shipment_id"] not in {r["shipment_id"] for r in later}


async def test_a_correction_of_a_data_error_marks_only_what_it_grounds_and_no_record_flag_without_a_serious_one(
    system: System,
) -> None:
    s = system
    mine, lot, _, _ = await shipped_under_the_wrong_seal(s)
    history = await ok(await s.custody.get(f"/lots/{lot}/history", headers=mine.auth), 200)
    registered = history["events"][0]["event_id"]
    done = await corrected(s, mine, lot, registered, "incorrect_data", "Produced on 31 October.")
    assert done["effect"] == "recorded"
    seal = await flag_of(s, "seal_mismatch", f"{lot}:first_shipment")
    assert seal is not None and "correction" not in evidence(seal)  # grounded on the shipment, not the registration
    assert await flag_of(s, "record_corrected", done["correction_id"]) is None


async def test_a_replay_rebuilds_the_marks_and_keeps_what_a_person_decided(system: System) -> None:
    s = system
    mine, lot, _, shipped = await shipped_under_the_wrong_seal(s)
    done = await corrected(s, mine, lot, shipped, "did_not_occur", "Never left the yard.")
    record = await flag_of(s, "record_corrected", done["correction_id"])
    assert record is not None
    out = await ok(await s.registry.post("/officers", headers=OPERATOR, json={"name": "O", "contact": "o"}))
    officer = bearer(out["credential"]["token"])
    await ok(await s.audit.post(f"/flags/{record['id']}/resolve", headers=officer, json={"note": "Seen: ok."}), 200)

    async def published() -> bool:
        return not await s.audit_rows("SELECT 1 FROM outbox WHERE topic = $1", AUDIT_DECISIONS)

    await wait_for(published, timeout_s=30, what="the decision to reach Kafka")
    sql = "SELECT rule, cause, severity, status, summary, evidence::text AS evidence FROM flags WHERE $1 = ANY(lot_ids)"
    live = sorted((tuple(r) for r in await s.audit_rows(sql, lot)), key=str)
    name = f"audit_corr_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(_migrate, "audit", pg_url(name))
        settings = AuditSettings(
            database_url=pg_url(name), topic_prefix=s.prefix, kafka_bootstrap_servers=ENV.kafka_bootstrap
        )
        await replay(settings, dsn=pg_url(name, "postgresql"), progress=False)
        conn = await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            rebuilt = sorted((tuple(r) for r in await conn.fetch(sql, lot)), key=str)
        finally:
            await conn.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert rebuilt == live
    assert ("record_corrected", done["correction_id"]) in {(r[0], r[1]) for r in rebuilt}
    assert {r[3] for r in rebuilt if r[0] == "record_corrected"} == {"resolved"}


async def test_a_flag_raised_after_a_correction_of_its_grounds_shows_it_from_the_start(system: System) -> None:
    """A shipment through Somalia, its data corrected (not voided: received later), then Somalia listed as a CAHRA:
    the transit flag the listing raises on the corrected shipment shows the correction, and nothing else changed."""
    s = system
    mine, trader = await s.party("mine", "RW"), await s.party("trader", "RW")
    body = {"lot_id": f"BAG-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "ore", "mass_kg": 500}
    lot = (await ok(await s.custody.post("/lots", headers=mine.auth, json={**body, "produced_at": T0})))["lot_id"]
    shipment = await ok(
        await s.custody.post(
            f"/lots/{lot}/shipments",
            headers=mine.auth,
            json={"to": trader.id, "mass_kg": 500, "shipped_at": T1, "transit_countries": ["SO"]},
        )
    )
    history = await ok(await s.custody.get(f"/lots/{lot}/history", headers=mine.auth), 200)
    (shipped,) = [e["event_id"] for e in history["events"] if e["type"] == "custody.lot.shipped"]
    done = await corrected(s, mine, lot, shipped, "incorrect_data", "Sealed S-7, not unsealed.")
    assert done["effect"] == "recorded"
    await ok(
        await s.registry.post(
            "/cahra",
            headers=OPERATOR,
            json={"country": "SO", "region": None, "effective_from": "2020-01-01", "source": "corrections test"},
        )
    )

    async def transit_flag() -> bool:
        rows = await s.audit_rows("SELECT 1 FROM flags WHERE rule = 'transit_through_cahra' AND $1 = ANY(lot_ids)", lot)
        return bool(rows)

    await wait_for(transit_flag, timeout_s=60, what="the transit_through_cahra flag", interval_s=0.2)
    (flag,) = await s.audit_rows("SELECT * FROM flags WHERE rule = 'transit_through_cahra' AND $1 = ANY(lot_ids)", lot)
    assert evidence(flag)["shipment_id"] == shipment["shipment_id"]
    assert evidence(flag)["correction"]["correction_id"] == done["correction_id"]
    assert flag["summary"].endswith(" [grounds corrected by the party (incorrect_data); review]")
    assert flag["status"] == "open"
    assert await flag_of(s, "record_corrected", done["correction_id"]) is None  # corrected before it was raised


async def test_after_a_voided_first_shipment_the_next_one_is_the_first_compared_with_the_registered_seal(
    system: System,
) -> None:
    s = system
    mine, trader = await s.party("mine", "RW"), await s.party("trader", "RW")
    body = {"lot_id": f"BAG-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "ore", "mass_kg": 500, "seal": "S-1"}
    lot = (await ok(await s.custody.post("/lots", headers=mine.auth, json={**body, "produced_at": T0})))["lot_id"]
    ship = {"to": trader.id, "mass_kg": 500, "shipped_at": T1, "max_transit_days": 60}
    await ok(await s.custody.post(f"/lots/{lot}/shipments", headers=mine.auth, json={**ship, "seal": "S-1"}))
    history = await ok(await s.custody.get(f"/lots/{lot}/history", headers=mine.auth), 200)
    (shipped,) = [e for e in history["events"] if e["type"] == "custody.lot.shipped"]
    await corrected(s, mine, lot, shipped["event_id"], "did_not_occur", "Loaded on the wrong truck.")
    again = await ok(await s.custody.post(f"/lots/{lot}/shipments", headers=mine.auth, json={**ship, "seal": "S-9"}))

    async def flagged() -> bool:
        return await flag_of(s, "seal_mismatch", f"{lot}:first_shipment") is not None

    await wait_for(flagged, timeout_s=60, what="the new first shipment's seal_mismatch", interval_s=0.2)
    flag = await flag_of(s, "seal_mismatch", f"{lot}:first_shipment")
    assert flag is not None
    assert (evidence(flag)["shipment_id"], evidence(flag)["shipped_seal"]) == (again["shipment_id"], "S-9")
    assert "correction" not in evidence(flag)  # its grounds are the new shipment, not the corrected one
