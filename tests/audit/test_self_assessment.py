"""Companies' self-assessments in audit, through the real services: submitted in the registry, published on
`registry.self_assessment.submitted`, projected into `self_assessments` (live, and by a replay: the same rows), and
read as the latest scores and trend by the participant's buyers (anyone who received a shipment from it), the
operator, its officers and itself; anyone else gets the 404 of an unknown participant. The trend itself (pure):
test_self_assessment_trend.py."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from audit.config import Settings as AuditSettings
from audit.replay import replay
from tests.audit.conftest import System
from tests.audit.test_scenario import deliver, lot_body, ok
from tests.conftest import ENV, OPERATOR, _admin, _migrate, bearer, pg_url
from tests.custody.conftest import Party
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUBMITTED = "registry.self_assessment.submitted"
QUESTIONS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "R1", "R2", "R3", "R4", "R5", "S1", "S2", "S3", "A1", "A2")
QUESTIONS += ("A3", "D1", "D2", "D3")
CHOICES = ("R3", "A1")


def answers(value: str, choice: str) -> dict[str, Any]:
    return {"answers": [{"question_id": q, "answer": choice if q in CHOICES else value} for q in QUESTIONS]}


# --- through the services --------------------------------------------------------------------------------------


SUBMITTERS: set[str] = set()  # the participants this module submitted for (the session's audit database is shared)


async def submit(s: System, who: Party, value: str, choice: str) -> dict[str, Any]:
    r = await s.registry.post(f"/participants/{who.id}/self-assessments", headers=who.auth, json=answers(value, choice))
    assert r.status_code == 201, r.text
    SUBMITTERS.add(who.id)
    return r.json()  # type: ignore[no-any-return]


async def projected(s: System, participant_id: str, n: int) -> None:
    async def known() -> bool:
        rows = await s.audit_rows("SELECT 1 FROM self_assessments WHERE participant_id = $1", participant_id)
        return len(rows) >= n

    await wait_for(known, timeout_s=30, what=f"audit to project {n} self-assessments of {participant_id}")


async def test_buyers_see_the_latest_score_and_the_trend_and_strangers_get_404(system: System) -> None:
    s = system
    seller = await s.party("trader", "RW")
    buyer = await s.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    stranger = await s.party("trader", "UG")
    mine = await s.party("mine", "RW", mining_type="lsm")
    ore = (await ok(await s.custody.post("/lots", headers=mine.auth, json=lot_body(100))))["lot_id"]
    await deliver(s, ore, mine, seller, 100, shipped="2026-03-02T08:00:00Z", received="2026-03-03T08:00:00Z")
    await deliver(s, ore, seller, buyer, 100, shipped="2026-03-04T08:00:00Z", received="2026-03-05T08:00:00Z")

    first = await submit(s, seller, "no", "none")
    second = await submit(s, seller, "partial", "some")
    third = await submit(s, seller, "yes", "all")
    await projected(s, seller.id, 3)

    async def buyer_known() -> bool:
        rows = await s.audit_rows(
            "SELECT 1 FROM shipments WHERE sender = $1 AND receiver = $2 AND status = 'received'", seller.id, buyer.id
        )
        return bool(rows)

    await wait_for(buyer_known, timeout_s=30, what="audit to know the seller's shipment was received")
    path = f"/participants/{seller.id}/self-assessment"
    view = await ok(await s.audit.get(path, headers=buyer.auth), 200)
    assert view["participant_id"] == seller.id
    assert view["latest"]["assessment_id"] == third["assessment_id"]
    assert view["latest"]["scores"] == third["scores"] and view["latest"]["total"] == 100.0
    assert [p["assessment_id"] for p in view["trend"]] == [x["assessment_id"] for x in (first, second, third)]
    assert [p["total"] for p in view["trend"]] == [0.0, second["total"], 100.0]
    assert view["trend"][0]["change"] is None
    assert view["trend"][2]["change"] == pytest.approx(100.0 - second["total"])
    assert view["change_since_previous"] == view["trend"][2]["change"]

    # the seller itself and the operator read it; the mine upstream (it sold to the seller, bought nothing from it),
    # a stranger and an unknown id get the same 404
    assert (await ok(await s.audit.get(path, headers=seller.auth), 200)) == view
    assert (await ok(await s.audit.get(path, headers=OPERATOR), 200)) == view
    for who in (stranger, mine):
        r = await s.audit.get(path, headers=who.auth)
        assert r.status_code == 404, r.text
    unknown = await s.audit.get(f"/participants/{uuid.uuid4()}/self-assessment", headers=OPERATOR)
    assert unknown.status_code == 404 and unknown.json()["title"] == r.json()["title"]
    # an officer overseeing the seller reads it; one overseeing someone else does not
    for scope, status in (([seller.id], 200), ([stranger.id], 404)):
        reg = await ok(
            await s.registry.post(
                "/officers", headers=OPERATOR, json={"name": "O", "contact": "o@x.org", "scope": scope}
            )
        )
        r = await s.audit.get(path, headers=bearer(reg["credential"]["token"]))
        assert r.status_code == status, r.text
    # a participant that submitted nothing: no latest, an empty trend
    empty = await ok(await s.audit.get(f"/participants/{buyer.id}/self-assessment", headers=buyer.auth), 200)
    assert (empty["latest"], empty["change_since_previous"], empty["trend"]) == (None, None, [])

    # the row as projected: what the registry published, nothing of the comments
    rows = await s.audit_rows(
        "SELECT assessment_id, questionnaire_version, total, scores::text AS scores, cmrt_answers::text AS cmrt "
        "FROM self_assessments WHERE assessment_id = $1",
        second["assessment_id"],
    )
    assert rows[0]["total"] == Decimal(str(second["total"])) and rows[0]["questionnaire_version"] == "2026-12"


async def test_a_replay_gives_the_same_rows(system: System) -> None:
    s = system
    who = await s.party("manufacturer", "DE")
    await submit(s, who, "partial", "most")
    await submit(s, who, "yes", "most")
    await projected(s, who.id, 2)
    settings = AuditSettings(
        database_url=s.audit_dsn, topic_prefix=s.prefix, kafka_bootstrap_servers=ENV.kafka_bootstrap
    )
    name = f"audit_replay_sa_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    sql = (
        "SELECT assessment_id, participant_id, submitted_at, questionnaire_version, scores, total, cmrt_answers, "
        "event_id FROM self_assessments WHERE participant_id = ANY($1) ORDER BY assessment_id"
    )
    try:
        await asyncio.to_thread(_migrate, "audit", pg_url(name))
        await replay(settings, dsn=pg_url(name, "postgresql"), progress=False)
        live, again = await asyncpg.connect(s.audit_dsn), await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            live_rows = await live.fetch(sql, sorted(SUBMITTERS))
            assert len([r for r in live_rows if r["participant_id"] == who.id]) == 2
            assert live_rows == await again.fetch(sql, sorted(SUBMITTERS))
        finally:
            await live.close()
            await again.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
