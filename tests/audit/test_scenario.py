"""Audit through the real broker: a scenario that trips every rule once, exactly one flag per cause; redelivery
adds nothing; a replay from offset 0 gives the same flags; a CAHRA change re-screens an old lot; risk flows down."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from audit.config import Settings as AuditSettings
from audit.replay import replay
from shared.consumer import EventConsumer
from shared.events import CloudEvent
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS, REGISTRY_EVENTS, physical
from tests.audit.conftest import System
from tests.conftest import ENV, OPERATOR, _admin, _migrate, pg_url
from tests.custody.conftest import Party
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALL_RULES = {
    "undocumented_custody",
    "mass_mismatch",
    "seal_mismatch",
    "transit_overdue",
    "time_contradiction",
    "yield_exceeded",
    "beyond_remaining",
    "capacity_exceeded",
    "transit_through_cahra",
    "origin_in_cahra",
    "uncertified_asm_in_cahra",
    "certified_asm_in_cahra",
    "smelter_not_rmap_conformant",
    "lsm_without_irma",
}


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def cahra(system: System, country: str, region: str | None = None, start: str = "2020-01-01") -> None:
    await ok(
        await system.registry.post(
            "/cahra",
            headers=OPERATOR,
            json={"country": country, "region": region, "effective_from": start, "source": "test list"},
        )
    )


async def certify(system: System, who: Party, **body: Any) -> None:
    await ok(await system.registry.post(f"/participants/{who.id}/certifications", headers=OPERATOR, json=body))


def lot_body(mass: float, produced: str = "2026-03-01T08:00:00Z", **over: Any) -> dict[str, Any]:
    return {
        "lot_id": f"BAG-{uuid.uuid4().hex[:8].upper()}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": mass,
        "produced_at": produced,
        "seal": "S-1",
        **over,
    }


async def flags(system: System, where: str = "TRUE") -> dict[tuple[str, str], dict[str, Any]]:
    rows = await system.audit_rows(
        f"SELECT rule, cause, severity, lot_ids, evidence::text AS evidence FROM flags WHERE {where}"
    )
    return {(r["rule"], r["cause"]): dict(r) for r in rows}


async def settle(system: System, expected_rules: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
    async def done() -> bool:
        return expected_rules <= {rule for rule, _ in await flags(system)}

    try:
        await wait_for(done, timeout_s=60, what=f"flags for {sorted(expected_rules)}", interval_s=0.2)
    except AssertionError as exc:
        have = {rule for rule, _ in await flags(system)}
        raise AssertionError(f"{exc}; missing {sorted(expected_rules - have)}") from None
    await asyncio.sleep(1.0)  # let anything in flight land, so "exactly one" is checked on the final state
    return await flags(system)


async def replayed_flags(system: System, where: str = "TRUE") -> dict[tuple[str, str], dict[str, Any]]:
    """The flags a replay from offset 0 of this module's topics gives, in a fresh database (`where` filters them, as
    SQL on `flags`). Each scenario case ends with `assert await replayed_flags(s) == await flags(s)` or a filtered
    form of it: live and replay agree."""
    settings = AuditSettings(
        database_url=system.audit_dsn, topic_prefix=system.prefix, kafka_bootstrap_servers=ENV.kafka_bootstrap
    )
    name = f"audit_replay_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(_migrate, "audit", pg_url(name))
        result = await replay(settings, dsn=pg_url(name, "postgresql"), progress=False)
        conn = await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            rows = await conn.fetch(
                f"SELECT rule, cause, severity, lot_ids, evidence::text AS evidence FROM flags WHERE {where}"
            )
        finally:
            await conn.close()
        assert result.flags >= len(rows)
        return {(r["rule"], r["cause"]): dict(r) for r in rows}
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_scenario_trips_every_rule_once(system: System) -> None:
    s = system
    await cahra(s, "CD", "CD-SK")
    await cahra(s, "BI")  # whole country: transit through it is flagged
    asm = await s.party("mine", "CD", region="CD-SK", mining_type="asm")
    asm_cert = await s.party("mine", "CD", region="CD-SK", mining_type="asm")
    await certify(s, asm_cert, scheme="fairmined", status="certified", valid_from="2025-01-01")
    lsm = await s.party("mine", "CD", region="CD-SK", mining_type="lsm", annual_capacity_kg={"tin": 1000})
    trader = await s.party("trader", "RW")
    smelter = await s.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    maker = await s.party("manufacturer", "DE")

    a = await ok(await s.custody.post("/lots", headers=asm.auth, json=lot_body(1000)))  # uncertified ASM in CAHRA
    await ok(await s.custody.post("/lots", headers=asm_cert.auth, json=lot_body(10)))  # certified ASM: info
    await ok(await s.custody.post("/lots", headers=lsm.auth, json=lot_body(600)))  # LSM, no IRMA
    l2 = await ok(await s.custody.post("/lots", headers=lsm.auth, json=lot_body(600)))  # 1,200 > 1,000 declared
    # A -> trader through BI, 5 % lighter and with another seal; trader -> smelter; smelting beyond tin's yield.
    sh = await ok(
        await s.custody.post(
            f"/lots/{a['lot_id']}/shipments",
            headers=asm.auth,
            json={
                "to": trader.id,
                "mass_kg": 1000,
                "shipped_at": "2026-03-02T08:00:00Z",
                "seal": "S-1",
                "transit_countries": ["BI"],
                "max_transit_days": 10,
            },
        )
    )
    await ok(
        await s.custody.post(
            f"/shipments/{sh['shipment_id']}/receipt",
            headers=trader.auth,
            json={"received_at": "2026-03-05T08:00:00Z", "mass_kg": 950, "seal": "S-9"},
        ),
        200,
    )
    sh2 = await ok(
        await s.custody.post(
            f"/lots/{a['lot_id']}/shipments",
            headers=trader.auth,
            json={"to": smelter.id, "mass_kg": 950, "shipped_at": "2026-03-06T08:00:00Z", "seal": "S-9"},
        )
    )
    # ... received before it was shipped (times that contradict each other)
    await ok(
        await s.custody.post(
            f"/shipments/{sh2['shipment_id']}/receipt",
            headers=smelter.auth,
            json={"received_at": "2026-03-04T08:00:00Z", "mass_kg": 950, "seal": "S-9"},
        ),
        200,
    )
    metal = await ok(
        await s.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": "2026-03-10T08:00:00Z",
                "inputs": [{"lot_id": a["lot_id"], "mass_kg": 950}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 800}],
            },
        )
    )  # 800 > 950 * 0.8
    out = metal["outputs"][0]["lot_id"]
    # A shipment never received, due long ago (the scheduled check finds it).
    await ok(
        await s.custody.post(
            f"/lots/{l2['lot_id']}/shipments",
            headers=lsm.auth,
            json={"to": trader.id, "mass_kg": 600, "shipped_at": "2026-03-02T08:00:00Z", "max_transit_days": 1},
        )
    )
    # Material from outside; an attempt beyond the remaining mass.
    await ok(
        await s.custody.post(
            "/lots/external",
            headers=trader.auth,
            json={
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": 50,
                "received_at": "2026-03-01T00:00:00Z",
                "origin": {"country": "MM"},
                "supplier": {"name": "Somebody"},
            },
        )
    )
    r = await s.custody.post(
        f"/lots/{out}/shipments",
        headers=smelter.auth,
        json={"to": maker.id, "mass_kg": 801, "shipped_at": "2026-03-11T08:00:00Z"},
    )
    assert r.status_code == 409

    found = await settle(s, ALL_RULES)
    by_rule: dict[str, list[tuple[str, str]]] = {}
    for key in found:
        by_rule.setdefault(key[0], []).append(key)
    assert set(by_rule) == ALL_RULES, set(by_rule) ^ ALL_RULES
    counts = {rule: len(keys) for rule, keys in by_rule.items()}
    # The LSM mine's two lots: each is an origin in a CAHRA and each lacks IRMA; every other rule trips once.
    assert counts == {**dict.fromkeys(ALL_RULES, 1), "lsm_without_irma": 2, "origin_in_cahra": 2}, counts
    severities = {rule: found[keys[0]]["severity"] for rule, keys in by_rule.items()}
    assert severities["certified_asm_in_cahra"] == "info"
    assert severities["uncertified_asm_in_cahra"] == "critical"
    assert ("origin_in_cahra", f"{a['lot_id']}:origin") not in found  # ASM in a CAHRA is judged as ASM only
    seal = await ok(await s.audit.get("/flags", params={"rule": "seal_mismatch"}, headers=OPERATOR), 200)
    assert seal["items"][0]["evidence"]["shipped_seal"] == "S-1"
    assert seal["items"][0]["evidence"]["received_seal"] == "S-9"

    # Risk flows downstream: the smelted metal inherits the ore's exposure.
    risk = await ok(await s.audit.get(f"/lots/{out}/risk", headers=OPERATOR), 200)
    assert risk["rating"] == "critical"
    assert {e["flag"]["rule"] for e in risk["inherited"]} >= {
        "uncertified_asm_in_cahra",
        "mass_mismatch",
        "seal_mismatch",
        "transit_through_cahra",
    }
    assert {f["rule"] for f in risk["own_flags"]} >= {"yield_exceeded", "smelter_not_rmap_conformant"}
    assert risk["origin_countries"] == ["CD"]
    assert [sm["participant_id"] for sm in risk["smelters"]] == [smelter.id]
    assert risk["smelters"][0]["rmap_status_then"] is None

    # Flags were published on audit.flags, once each.
    records = await read_topic(ENV.kafka_bootstrap, physical(AUDIT_FLAGS, s.prefix), expect=len(found), timeout_s=10)
    published = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records]
    raised = [e.data["id"] for e in published if e.type == "audit.flag.raised"]
    assert len(raised) == len(set(raised)) == len(found)

    # Redelivery of both whole topics (a new consumer group, from offset 0, same database) adds nothing.
    projection_before = await flags(s)
    settings = AuditSettings(
        database_url=s.audit_dsn, topic_prefix=s.prefix, kafka_bootstrap_servers=ENV.kafka_bootstrap
    )
    from audit.consumer import make_consumer

    again: EventConsumer = make_consumer(settings, group_id=f"redeliver-{uuid.uuid4().hex[:6]}")
    again.lock_key = None  # beside the service's consumer, which holds the writer lock: redelivery is what is tested
    task = asyncio.create_task(again.run())
    total = len(
        await read_topic(ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, s.prefix), expect=10_000, timeout_s=2)
    ) + len(await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_EVENTS, s.prefix), expect=10_000, timeout_s=2))

    async def all_read() -> bool:
        return again.applied + again.duplicates >= total

    try:
        await wait_for(all_read, timeout_s=30, what="the redelivery to read both topics")
    finally:
        again.stop()
        await task
    assert again.applied == 0
    assert await flags(s) == projection_before

    # Replay from offset 0 into a fresh database ends with exactly the same flags.
    assert await replayed_flags(s) == projection_before


async def test_a_cahra_change_re_screens_an_old_lot(system: System) -> None:
    s = system
    mine = await s.party("mine", "ML", mining_type="lsm")
    await certify(s, mine, scheme="irma", level="irma_50", valid_from="2020-01-01")
    lot = await ok(await s.custody.post("/lots", headers=mine.auth, json=lot_body(100, "2025-06-01T00:00:00Z")))
    await asyncio.sleep(1.0)
    assert not [k for k in await flags(s) if k[1] == f"{lot['lot_id']}:origin"]
    await cahra(s, "ML", start="2025-01-01")  # listed later, effective before the lot was mined
    found = await settle(s, set())

    async def flagged() -> bool:
        return ("origin_in_cahra", f"{lot['lot_id']}:origin") in await flags(s)

    await wait_for(flagged, timeout_s=30, what="the old lot to be re-screened")
    assert found is not None


async def test_flags_are_resolved_by_compliance_officers(system: System) -> None:
    s = system
    page = await ok(await s.audit.get("/flags", params={"status": "open", "limit": 1}, headers=OPERATOR), 200)
    flag = page["items"][0]
    # The shared operator token decides nothing (tests/audit/test_flag_duties.py has who may do what).
    r = await s.audit.post(f"/flags/{flag['id']}/resolve", headers=OPERATOR, json={"note": "x"})
    assert r.status_code == 403
    registered = await ok(
        await s.registry.post("/officers", headers=OPERATOR, json={"name": "Officer", "contact": "o@example.org"})
    )
    officer = {"Authorization": f"Bearer {registered['credential']['token']}"}
    r = await s.audit.post(f"/flags/{flag['id']}/resolve", headers=officer, json={})
    assert r.status_code == 422  # a note is required
    done = await ok(
        await s.audit.post(
            f"/flags/{flag['id']}/resolve", headers=officer, json={"note": "checked the weighbridge ticket"}
        ),
        200,
    )
    assert (done["status"], done["note"]) == ("resolved", "checked the weighbridge ticket")
    assert done["resolved_by"] == registered["officer"]["id"]
    assert (await s.audit.post(f"/flags/{flag['id']}/resolve", headers=officer, json={"note": "x"})).status_code == 409
    # Participants see only flags on lots they hold or held.
    outsider = await s.party("trader", "FR")
    mine_view = await ok(await s.audit.get("/flags", headers=outsider.auth), 200)
    assert mine_view["items"] == []
    assert (await s.audit.get(f"/flags/{flag['id']}", headers=outsider.auth)).status_code == 404
    assert (await s.audit.get("/flags")).status_code == 401
