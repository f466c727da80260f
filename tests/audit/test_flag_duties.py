"""Separation of duties on flags, through the whole system (registry process, custody and audit in-process, Kafka):
the participants a flag is about respond but never resolve; the shared operator token decides nothing; compliance
officers resolve within their scope; every current holder of an affected lot (made from the flagged lot included)
sees the flag and acknowledges it for itself; a revoked token's live stream ends; decisions survive a replay."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest

from audit.config import Settings as AuditSettings
from audit.events import DecisionResolved, FlagResolved
from audit.replay import replay
from shared.topics import AUDIT_DECISIONS, AUDIT_FLAGS, physical
from tests.audit.conftest import System
from tests.conftest import ENV, OPERATOR, _admin, _migrate, bearer, pg_url
from tests.custody.conftest import Party
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


@dataclass
class Story:
    """A mine in a CAHRA registers ore (flag: uncertified ASM in a CAHRA), ships it to a smelter, which smelts it into
    metal and ships the metal to a manufacturer."""

    mine: Party
    smelter: Party
    maker: Party
    ore: str
    metal: str
    flag: dict[str, Any]


async def officer(s: System, scope: str | list[str] = "all") -> dict[str, str]:
    out = await ok(
        await s.registry.post("/officers", headers=OPERATOR, json={"name": "O", "contact": "o", "scope": scope})
    )
    return bearer(out["credential"]["token"]) | {"x-officer-id": out["officer"]["id"]}


def auth(headers: dict[str, str]) -> dict[str, str]:
    return {"Authorization": headers["Authorization"]}


@pytest.fixture(scope="module")
async def story(system: System) -> Story:
    s = system
    await ok(
        await s.registry.post(
            "/cahra",
            headers=OPERATOR,
            json={"country": "CD", "region": "CD-SK", "effective_from": "2020-01-01", "source": "duties test"},
        )
    )
    mine = await s.party("mine", "CD", region="CD-SK", mining_type="asm")
    smelter = await s.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    maker = await s.party("manufacturer", "DE")
    ore = await ok(
        await s.custody.post(
            "/lots",
            headers=mine.auth,
            json={
                "lot_id": f"BAG-{uuid.uuid4().hex[:8].upper()}",
                "mineral": "tin",
                "form": "ore",
                "mass_kg": 1000,
                "produced_at": "2026-03-01T08:00:00Z",
                "seal": "S-1",
            },
        )
    )
    sh = await ok(
        await s.custody.post(
            f"/lots/{ore['lot_id']}/shipments",
            headers=mine.auth,
            json={"to": smelter.id, "mass_kg": 1000, "shipped_at": "2026-03-02T08:00:00Z", "seal": "S-1"},
        )
    )
    await ok(
        await s.custody.post(
            f"/shipments/{sh['shipment_id']}/receipt",
            headers=smelter.auth,
            json={"received_at": "2026-03-04T08:00:00Z", "mass_kg": 1000, "seal": "S-1"},
        ),
        200,
    )
    made = await ok(
        await s.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": "2026-03-10T08:00:00Z",
                "inputs": [{"lot_id": ore["lot_id"], "mass_kg": 1000}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 600}],
            },
        )
    )
    metal = made["outputs"][0]["lot_id"]
    sh2 = await ok(
        await s.custody.post(
            f"/lots/{metal}/shipments",
            headers=smelter.auth,
            json={"to": maker.id, "mass_kg": 600, "shipped_at": "2026-03-11T08:00:00Z"},
        )
    )
    await ok(
        await s.custody.post(
            f"/shipments/{sh2['shipment_id']}/receipt",
            headers=maker.auth,
            json={"received_at": "2026-03-12T08:00:00Z", "mass_kg": 600},
        ),
        200,
    )

    async def received() -> bool:
        rows = await s.audit_rows("SELECT custodian FROM lots WHERE lot_id = $1", metal)
        return bool(rows) and rows[0]["custodian"] == maker.id

    await wait_for(received, timeout_s=60, what="audit to see the metal received", interval_s=0.2)
    page = await ok(
        await s.audit.get(
            "/flags", params={"rule": "uncertified_asm_in_cahra", "lot_id": ore["lot_id"]}, headers=OPERATOR
        ),
        200,
    )
    (flag,) = page["items"]
    assert flag["participants"] == [mine.id]
    return Story(mine, smelter, maker, ore["lot_id"], metal, flag)


async def test_the_mine_cannot_resolve_its_own_flag(system: System, story: Story) -> None:
    r = await system.audit.post(
        f"/flags/{story.flag['id']}/resolve", headers=story.mine.auth, json={"note": "we are fine"}
    )
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "compliance officer" in r.json()["detail"]
    # ... nor acknowledge it away (it holds nothing the flag affects any more), but it may respond with evidence.
    assert (
        await system.audit.post(f"/flags/{story.flag['id']}/acknowledge", headers=story.mine.auth)
    ).status_code == 403
    answered = await ok(
        await system.audit.post(
            f"/flags/{story.flag['id']}/respond",
            headers=story.mine.auth,
            json={
                "note": "Our certification audit is scheduled",
                "evidence": [{"description": "Audit letter", "sha256": "A" * 64}],
            },
        ),
        200,
    )
    assert answered["status"] == "open"
    (response,) = answered["responses"]
    assert (response["decided_by"], response["kind"], response["evidence"]) == (
        story.mine.id,
        "respond",
        [{"description": "Audit letter", "sha256": "a" * 64}],
    )
    bad = await system.audit.post(
        f"/flags/{story.flag['id']}/respond",
        headers=story.mine.auth,
        json={"note": "x", "evidence": [{"description": "nowhere"}]},
    )
    assert bad.status_code == 422  # evidence says where it is or what it is
    nul = await system.audit.post(
        f"/flags/{story.flag['id']}/respond",
        headers=story.mine.auth,
        json={"note": "a\x00b", "evidence": [{"description": "x\x00", "uri": "https://example.org/\x00"}]},
    )
    assert nul.status_code == 422, nul.text  # PostgreSQL cannot store NUL: refused, not a 500
    # A holder the flag does not name does not respond for the mine.
    r = await system.audit.post(f"/flags/{story.flag['id']}/respond", headers=story.smelter.auth, json={"note": "x"})
    assert r.status_code == 403


async def test_the_operator_token_cannot_resolve(system: System, story: Story) -> None:
    for action, body in (("resolve", {"note": "fine"}), ("acknowledge", {}), ("reopen", {"note": "x"})):
        r = await system.audit.post(f"/flags/{story.flag['id']}/{action}", headers=OPERATOR, json=body)
        assert r.status_code == 403, r.text
        assert "POST /officers" in r.json()["detail"]


async def test_two_holders_acknowledge_separately_and_the_downstream_holder_sees_the_flag(
    system: System, story: Story
) -> None:
    s = system
    # The manufacturer never held the ore: it holds metal made from it, and sees the flag.
    seen = await ok(
        await s.audit.get("/flags", params={"rule": "uncertified_asm_in_cahra"}, headers=story.maker.auth), 200
    )
    assert story.flag["id"] in [f["id"] for f in seen["items"]]
    shown = await ok(await s.audit.get(f"/flags/{story.flag['id']}", headers=story.maker.auth), 200)
    assert (shown["rule"], shown["severity"], shown["summary"]) == (
        story.flag["rule"],
        story.flag["severity"],
        story.flag["summary"],
    )
    by_maker = await ok(
        await s.audit.post(f"/flags/{story.flag['id']}/acknowledge", headers=story.maker.auth, json={"note": "seen"}),
        200,
    )
    assert [a["participant_id"] for a in by_maker["acknowledgements"]] == [story.maker.id]
    assert by_maker["history"][-1]["authority"] == {"as": "holder", "lots": [story.metal]}
    by_smelter = await ok(await s.audit.post(f"/flags/{story.flag['id']}/acknowledge", headers=story.smelter.auth), 200)
    # Issue 24: each holder sees its own acknowledgement; an officer sees every holder's.
    assert [a["participant_id"] for a in by_smelter["acknowledgements"]] == [story.smelter.id]
    overseer = await ok(await s.audit.get(f"/flags/{story.flag['id']}", headers=auth(await officer(s))), 200)
    acks = {a["participant_id"]: a for a in overseer["acknowledgements"]}
    assert set(acks) == {story.maker.id, story.smelter.id}
    assert (acks[story.maker.id]["note"], acks[story.smelter.id]["note"]) == ("seen", None)
    assert by_smelter["status"] == "open"  # an acknowledgement is the holder's own, not a status
    again = await s.audit.post(f"/flags/{story.flag['id']}/acknowledge", headers=story.maker.auth)
    assert again.status_code == 409
    stranger = await s.party("trader", "FR")
    assert (await s.audit.get(f"/flags/{story.flag['id']}", headers=stranger.auth)).status_code == 404
    r = await s.audit.post(f"/flags/{story.flag['id']}/acknowledge", headers=stranger.auth)
    assert r.status_code == 404


async def test_officers_resolve_within_their_scope(system: System, story: Story) -> None:
    s = system
    elsewhere = await officer(s, [story.maker.id])  # oversees the manufacturer: not named, never held the ore
    r = await s.audit.post(f"/flags/{story.flag['id']}/resolve", headers=auth(elsewhere), json={"note": "fine"})
    assert r.status_code == 403, r.text
    assert "outside your scope" in r.json()["detail"]
    assert (await s.audit.get(f"/flags/{story.flag['id']}", headers=auth(elsewhere))).status_code == 404  # unseen
    ours = await officer(s, [story.mine.id])
    assert story.flag["id"] in [
        f["id"] for f in (await ok(await s.audit.get("/flags", headers=auth(ours)), 200))["items"]
    ]
    done = await ok(
        await s.audit.post(
            f"/flags/{story.flag['id']}/resolve",
            headers=auth(ours),
            json={"note": "Fairmined certificate 2026-114 seen; valid from March"},
        ),
        200,
    )
    assert (done["status"], done["resolved_by"], done["note"]) == (
        "resolved",
        ours["x-officer-id"],
        "Fairmined certificate 2026-114 seen; valid from March",
    )
    last = done["history"][-1]
    assert (last["kind"], last["decided_by"], last["decided_by_kind"], last["note"]) == (
        "resolve",
        ours["x-officer-id"],
        "officer",
        "Fairmined certificate 2026-114 seen; valid from March",
    )
    assert last["authority"] == {"as": "officer", "scope": [story.mine.id], "covers": [story.mine.id]}
    assert done["resolved_at"] == last["decided_at"]
    again = await s.audit.post(f"/flags/{story.flag['id']}/resolve", headers=auth(ours), json={"note": "x"})
    assert again.status_code == 409
    # The downstream lot's risk says the upstream flag was resolved, by whom and when.
    risk = await ok(await s.audit.get(f"/lots/{story.metal}/risk", headers=story.maker.auth), 200)
    (inherited,) = [e for e in risk["inherited"] if e["flag"]["id"] == story.flag["id"]]
    assert (inherited["flag"]["status"], inherited["flag"]["resolved_by"], inherited["flag"]["resolved_at"]) == (
        "resolved",
        ours["x-officer-id"],
        done["resolved_at"],
    )
    # The resolution went out as a decision on audit.decisions, with all a replay needs.
    records = await read_topic(ENV.kafka_bootstrap, physical(AUDIT_DECISIONS, s.prefix), expect=100, timeout_s=3)
    resolved = [r for r in records if dict(r.headers).get("ce_type") == b"audit.decision.resolved"]
    assert resolved and resolved[-1].key == story.flag["id"].encode()
    recorded = DecisionResolved.model_validate_json(resolved[-1].value)
    assert (recorded.decision_id, recorded.rule.value, recorded.cause) == (
        last["id"],
        story.flag["rule"],
        story.flag["cause"],
    )
    # ... and the flag as it now is, with the decision, on audit.flags for dashboards.
    flag_records = await read_topic(ENV.kafka_bootstrap, physical(AUDIT_FLAGS, s.prefix), expect=1000, timeout_s=3)
    (on_flags,) = [
        FlagResolved.model_validate_json(r.value)
        for r in flag_records
        if dict(r.headers).get("ce_type") == b"audit.flag.resolved" and r.key == story.ore.encode()
    ]
    assert (on_flags.id, on_flags.decision.id, on_flags.resolved_by) == (
        story.flag["id"],
        last["id"],
        ours["x-officer-id"],
    )


async def test_a_revoked_token_ends_its_stream(system: System, story: Story) -> None:
    s = system
    stranger = await s.party("trader", "RW")
    listening = {
        p.id: asyncio.create_task(s.audit.get("/stream", headers=p.auth, timeout=30)) for p in (story.maker, stranger)
    }
    await asyncio.sleep(0.5)
    assert not any(t.done() for t in listening.values())
    # A decision on the flag reaches the holder of the metal made from the flagged ore, not a stranger.
    ours = await officer(s, [story.mine.id])
    await ok(await s.audit.post(f"/flags/{story.flag['id']}/reopen", headers=auth(ours), json={"note": "again"}), 200)
    await ok(await s.audit.post(f"/flags/{story.flag['id']}/resolve", headers=auth(ours), json={"note": "done"}), 200)
    await asyncio.sleep(0.5)
    for p in (story.maker, stranger):
        jti = jwt.decode(p.token, options={"verify_signature": False})["jti"]
        await ok(await s.registry.post(f"/credentials/{jti}/revoke", headers=OPERATOR, json={"reason": "test"}), 200)
    for pid, task in listening.items():
        r = await asyncio.wait_for(task, timeout=15)  # auth_refresh_s is 1 s here; today's stream never ends
        assert r.status_code == 200
        assert "event: hello" in r.text
        assert "event: goodbye" in r.text and "token revoked" in r.text
        assert (story.flag["id"] in r.text) == (pid == story.maker.id), pid


async def test_decisions_survive_a_replay(system: System, story: Story) -> None:
    s = system
    ours = await officer(s)
    flags = (await ok(await s.audit.get("/flags", params={"limit": 500}, headers=OPERATOR), 200))["items"]
    other = next(f for f in flags if f["status"] == "open" and f["id"] != story.flag["id"])
    await ok(await s.audit.post(f"/flags/{other['id']}/resolve", headers=auth(ours), json={"note": "first look"}), 200)
    await ok(await s.audit.post(f"/flags/{other['id']}/reopen", headers=auth(ours), json={"note": "look again"}), 200)
    await ok(await s.audit.post(f"/flags/{other['id']}/resolve", headers=auth(ours), json={"note": "second look"}), 200)

    decisions_sql = (
        "SELECT id, flag_id, kind, decided_by, decided_by_kind, authority::text, decided_at, note, evidence::text "
        "FROM flag_decisions ORDER BY id"
    )
    statuses_sql = "SELECT rule, cause, status, resolved_by, resolved_at, note FROM flags ORDER BY rule, cause"
    live_decisions = await s.audit_rows(decisions_sql)
    live_statuses = await s.audit_rows(statuses_sql)
    assert len(live_decisions) >= 6  # a response, two acknowledgements, resolutions and a re-opening

    async def published() -> bool:
        return not await s.audit_rows("SELECT 1 FROM outbox WHERE topic = $1", AUDIT_DECISIONS)

    await wait_for(published, timeout_s=30, what="the decisions to reach Kafka")
    name = f"audit_duties_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(_migrate, "audit", pg_url(name))
        settings = AuditSettings(
            database_url=pg_url(name), topic_prefix=s.prefix, kafka_bootstrap_servers=ENV.kafka_bootstrap
        )
        result = await replay(settings, dsn=pg_url(name, "postgresql"), progress=False)
        assert result.decisions == len(live_decisions)
        conn_rows = await _rows(pg_url(name, "postgresql"), decisions_sql)
        assert [dict(r) for r in conn_rows] == [dict(r) for r in live_decisions]
        replayed = {(r["rule"], r["cause"]): dict(r) for r in await _rows(pg_url(name, "postgresql"), statuses_sql)}
        for r in live_statuses:
            key = (r["rule"], r["cause"])
            if key in replayed:  # the overdue check may find more in a replay run later; what was decided matches
                assert replayed[key] == dict(r), key
        assert replayed[(story.flag["rule"], story.flag["cause"])]["status"] == "resolved"
        assert replayed[(other["rule"], other["cause"])]["note"] == "second look"
        # A second replay into the same database re-applies nothing twice: decisions are kept by id.
        again = await replay(settings, dsn=pg_url(name, "postgresql"), progress=False)
        assert again.decisions == len(live_decisions)
        assert [dict(r) for r in await _rows(pg_url(name, "postgresql"), decisions_sql)] == [
            dict(r) for r in live_decisions
        ]
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _rows(dsn: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_the_migration_keeps_what_people_decided(infra: None) -> None:
    """Flags acknowledged or resolved before separation of duties keep those decisions (as decision rows, queued on
    audit.decisions), and downgrading puts the acknowledgement back."""
    from alembic import command
    from alembic.config import Config

    from tests.conftest import ROOT

    name = f"audit_migrate_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    cfg = Config(str(ROOT / "services" / "audit" / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", pg_url(name))
    dsn = pg_url(name, "postgresql")
    try:
        await asyncio.to_thread(command.upgrade, cfg, "a7d1e0000002")
        insert = (
            "INSERT INTO flags (id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, status, "
            "acknowledged_by, acknowledged_at, resolved_by, resolved_at, note) VALUES "
            "($1, 'seal_mismatch', $1, 'high', 'L1', '{L1}', '{P1}', 's', '{}', $2, $3, $4, $5, $6, $7)"
        )
        at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
        await _execute(dsn, insert, "F-ACK", "acknowledged", "P1", at, None, None, "looking")
        await _execute(dsn, insert, "F-RES", "resolved", "P2", at, "operator", at, "ticket seen")
        await _execute(dsn, insert, "F-OPEN", "open", None, None, None, None, None)
        await asyncio.to_thread(command.upgrade, cfg, "a7d1e0000003")
        flags = {r["id"]: dict(r) for r in await _rows(dsn, "SELECT id, status, resolved_by, note FROM flags")}
        assert flags["F-ACK"]["status"] == "open"  # the acknowledgement is its author's row now
        assert (flags["F-RES"]["status"], flags["F-RES"]["resolved_by"], flags["F-RES"]["note"]) == (
            "resolved",
            "operator",
            "ticket seen",
        )
        decisions = await _rows(
            dsn, "SELECT flag_id, kind, decided_by, decided_at, note FROM flag_decisions ORDER BY flag_id, kind"
        )
        assert [tuple(r) for r in decisions] == [
            ("F-ACK", "acknowledge", "P1", at, "looking"),
            ("F-RES", "acknowledge", "P2", at, None),
            ("F-RES", "resolve", "operator", at, "ticket seen"),
        ]
        queued = await _rows(dsn, "SELECT type, key, data::text AS data FROM outbox WHERE topic = 'audit.decisions'")
        assert sorted(r["type"] for r in queued) == [
            "audit.decision.acknowledged",
            "audit.decision.acknowledged",
            "audit.decision.resolved",
        ]
        from audit.events import DecisionRecorded

        for r in queued:  # what a replay reads back
            DecisionRecorded.model_validate_json(r["data"])
        await asyncio.to_thread(command.downgrade, cfg, "a7d1e0000002")
        back = {r["id"]: dict(r) for r in await _rows(dsn, "SELECT id, status, acknowledged_by, note FROM flags")}
        assert (back["F-ACK"]["status"], back["F-ACK"]["acknowledged_by"], back["F-ACK"]["note"]) == (
            "acknowledged",
            "P1",
            "looking",
        )
        assert back["F-RES"]["status"] == "resolved"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _execute(dsn: str, sql: str, *args: Any) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()
