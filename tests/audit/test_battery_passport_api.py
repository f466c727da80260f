"""The responsibly-produced share and the battery passport's due diligence through the whole system (registry process,
custody and audit in-process, Kafka): a cobalt mine's ore is refined, mixed with a recycler's lithium into cathode
material, made into a battery; a flag upstream is acknowledged and resolved; each endpoint answers what custody
recorded and audit judged, to whom may read the lot, and the same 404 to anyone else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.audit.conftest import System
from tests.conftest import OPERATOR, bearer
from tests.custody.conftest import Party
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


@dataclass
class Chain:
    mine: Party
    refiner: Party
    recycler: Party
    cam: Party
    maker: Party
    outsider: Party
    rmi: str
    ore: str
    lithium: str
    battery: str
    flag: dict[str, Any]
    assessment: dict[str, Any]


async def ship(
    s: System, lot: str, sender: Party, to: Party, kg: float, at: str, received_kg: float | None = None
) -> None:
    sh = await ok(
        await s.custody.post(
            f"/lots/{lot}/shipments", headers=sender.auth, json={"to": to.id, "mass_kg": kg, "shipped_at": at}
        )
    )
    await ok(
        await s.custody.post(
            f"/shipments/{sh['shipment_id']}/receipt",
            headers=to.auth,
            json={"received_at": at.replace("T08", "T18"), "mass_kg": received_kg or kg},
        ),
        200,
    )


async def transform(
    s: System, who: Party, kind: str, at: str, inputs: dict[str, float], out: tuple[str, str, float], model: str
) -> str:
    mineral, form, kg = out
    made = await ok(
        await s.custody.post(
            "/transformations",
            headers=who.auth,
            json={
                "kind": kind,
                "occurred_at": at,
                "custody_model": model,
                "inputs": [{"lot_id": lot, "mass_kg": m} for lot, m in inputs.items()],
                "outputs": [{"mineral": mineral, "form": form, "mass_kg": kg}],
            },
        )
    )
    return str(made["outputs"][0]["lot_id"])


@pytest.fixture(scope="module")
async def chain(system: System) -> Chain:
    s = system
    rmi = f"CID{uuid.uuid4().int % 10**6:06d}"
    mine = await s.party("mine", "CD", region="CD-LU", mining_type="lsm")
    refiner = await s.party("refiner", "FI", identifiers={"rmi_smelter_id": rmi})
    recycler = await s.party("recycler", "DE")
    cam = await s.party("component_manufacturer", "PL")
    maker = await s.party("manufacturer", "DE")
    outsider = await s.party("manufacturer", "FR")
    for who, body in (
        (mine, {"scheme": "irma", "level": "irma_75", "valid_from": "2020-01-01"}),
        (refiner, {"scheme": "rmap", "status": "conformant", "valid_from": "2020-01-01"}),
    ):
        await ok(await s.registry.post(f"/participants/{who.id}/certifications", headers=OPERATOR, json=body))
    ore = await ok(
        await s.custody.post(
            "/lots",
            headers=mine.auth,
            json={
                "lot_id": f"ORE-{uuid.uuid4().hex[:8].upper()}",
                "mineral": "cobalt",
                "form": "ore",
                "mass_kg": 1000,
                "produced_at": "2026-03-01T08:00:00Z",
            },
        )
    )
    await ship(s, ore["lot_id"], mine, refiner, 1000, "2026-03-02T08:00:00Z", received_kg=950)  # a mass mismatch
    sulphate = await transform(
        s, refiner, "refining", "2026-03-10T08:00:00Z", {ore["lot_id"]: 950}, ("cobalt", "metal", 400), "segregated"
    )
    lithium = await ok(
        await s.custody.post(
            "/lots/recycled",
            headers=recycler.auth,
            json={"mineral": "lithium", "form": "metal", "mass_kg": 100, "source": "recycled", "country": "DE"},
        )
    )
    await ship(s, sulphate, refiner, cam, 400, "2026-03-11T08:00:00Z")
    await ship(s, lithium["lot_id"], recycler, cam, 100, "2026-03-11T08:00:00Z")
    cathode = await transform(
        s,
        cam,
        "processing",
        "2026-03-20T08:00:00Z",
        {sulphate: 300, lithium["lot_id"]: 100},
        ("cobalt", "component", 380),
        "mass_balance",
    )
    await ship(s, cathode, cam, maker, 380, "2026-03-21T08:00:00Z")
    battery = await transform(
        s,
        maker,
        "manufacturing",
        "2026-03-25T08:00:00Z",
        {cathode: 380},
        ("cobalt", "product", 380),
        "identity_preserved",
    )

    async def projected() -> bool:
        return bool(await s.audit_rows("SELECT 1 FROM transformation_outputs WHERE lot_id = $1", battery)) and bool(
            await s.audit_rows("SELECT 1 FROM flags WHERE rule = 'mass_mismatch' AND $1 = ANY(lot_ids)", ore["lot_id"])
        )

    await wait_for(projected, timeout_s=60, what="audit to project the battery and the mass mismatch", interval_s=0.2)
    page = await ok(
        await s.audit.get("/flags", params={"rule": "mass_mismatch", "lot_id": ore["lot_id"]}, headers=OPERATOR), 200
    )
    (flag,) = page["items"]
    await ok(await s.audit.post(f"/flags/{flag['id']}/acknowledge", headers=maker.auth, json={"note": "seen"}), 200)
    officer = await ok(
        await s.registry.post("/officers", headers=OPERATOR, json={"name": "O", "contact": "o", "scope": "all"})
    )
    await ok(
        await s.audit.post(
            f"/flags/{flag['id']}/resolve",
            headers=bearer(officer["credential"]["token"]),
            json={"note": "weighed again: scale fault"},
        ),
        200,
    )
    # the maker's due-diligence policy: its self-assessment (every answer yes, or all for a choice)
    questionnaire = await ok(await s.registry.get("/self-assessment/questionnaire", headers=maker.auth), 200)
    answers = [
        {"question_id": q["id"], "answer": "all" if q["answer_type"] == "choice" else "yes"}
        for q in questionnaire["questions"]
    ]
    assessment = await ok(
        await s.registry.post(
            f"/participants/{maker.id}/self-assessments",
            headers=maker.auth,
            json={"questionnaire_version": questionnaire["questionnaire_version"], "answers": answers},
        )
    )

    async def assessed() -> bool:
        return bool(await s.audit_rows("SELECT 1 FROM self_assessments WHERE participant_id = $1", maker.id))

    await wait_for(assessed, timeout_s=60, what="audit to project the self-assessment", interval_s=0.2)
    return Chain(
        mine, refiner, recycler, cam, maker, outsider, rmi, ore["lot_id"], lithium["lot_id"], battery, flag, assessment
    )


def by(shares: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{s['category']}:{s['value']}": s for s in shares}


async def test_the_responsible_share_of_a_battery(system: System, chain: Chain) -> None:
    out = await ok(await system.audit.get(f"/lots/{chain.battery}/responsible-share", headers=chain.maker.auth), 200)
    o = by(out["origins"])
    assert set(o) == {"irma:irma_75", "recycled:recycled"}
    irma = o["irma:irma_75"]
    assert (
        irma["fraction"] == pytest.approx(0.75) and irma["claim"] == "mass_balance"
    )  # the cathode mixed by mass balance
    assert irma["physical_kg"] == 0 and irma["claimable_fraction"] == pytest.approx(0.75)
    assert [e["lot_id"] for e in irma["evidence"]] == [chain.ore]
    assert irma["evidence"][0]["participant_id"] is None  # the mine is no counterparty of the maker
    assert irma["evidence"][0]["scheme"] == "irma" and irma["evidence"][0]["valid_from"] == "2020-01-01"
    assert o["recycled:recycled"]["fraction"] == pytest.approx(0.25)
    s = by(out["smelters"])
    assert s["rmap:conformant"]["fraction"] == pytest.approx(0.75)
    assert s["rmap:conformant"]["evidence"][0]["participant_id"] == chain.refiner.id  # smelters and refiners are public
    assert s["rmap:no_smelting"]["fraction"] == pytest.approx(0.25)
    assert sorted(p["passes"] for p in out["steps"]) == ["mass_balance", "physical", "physical"]
    assert sum(x["fraction"] for x in out["origins"]) == pytest.approx(1)
    seen = await ok(await system.audit.get(f"/lots/{chain.battery}/responsible-share", headers=OPERATOR), 200)
    assert by(seen["origins"])["irma:irma_75"]["evidence"][0]["participant_id"] == chain.mine.id


async def test_the_battery_passport_due_diligence(system: System, chain: Chain) -> None:
    out = await ok(
        await system.audit.get(f"/lots/{chain.battery}/battery-passport/due-diligence", headers=chain.maker.auth), 200
    )
    assert out["lot_id"] == chain.battery and out["mineral"] == "cobalt"
    report = out["supply_chain_due_diligence_report"]
    mats = {m["raw_material"]: m for m in report["raw_materials"]}
    assert set(mats) == {"cobalt", "lithium"}
    co = mats["cobalt"]
    [origin] = co["origins"]
    assert (origin["country"], origin["region"], origin["mining_type"]) == ("CD", "CD-LU", "lsm")
    assert origin["participant_id"] is None and origin["name"] is None and origin["share"] == pytest.approx(0.75)
    [refiner] = co["smelters_and_refiners"]
    assert (refiner["participant_id"], refiner["rmi_facility_id"], refiner["country"]) == (
        chain.refiner.id,
        chain.rmi,
        "FI",
    )
    assert refiner["rmap_status_then"] == "conformant" and refiner["share"] == pytest.approx(0.75)
    [risk] = [r for r in co["risks"] if r["rule"] == "mass_mismatch"]
    assert risk["status"] == "resolved" and risk["handled"]
    assert [(d["kind"], d["decided_by_kind"]) for d in risk["decisions"]] == [
        ("acknowledge", "manufacturer"),
        ("resolve", "officer"),
    ]
    assert risk["decisions"][0]["decided_by"] == chain.maker.id
    assert {(a["scheme"], a["value"]) for a in co["third_party_assurances"]} == {
        ("irma", "irma_75"),
        ("rmap", "conformant"),
    }
    li = mats["lithium"]
    assert li["origins"][0]["origin_kind"] == "recycled" and li["origins"][0]["recycled_source"] == "recycled"
    assert li["share"] == pytest.approx(0.25)
    policy = report["due_diligence_policy"]
    assert policy["assessment_id"] == chain.assessment["assessment_id"]
    assert policy["total"] == pytest.approx(chain.assessment["total"]) and policy["total"] > 0
    assert out["truncated"] is False and out["unverified"]
    # the operator reads every identity and has no policy of its own
    seen = await ok(
        await system.audit.get(f"/lots/{chain.battery}/battery-passport/due-diligence", headers=OPERATOR), 200
    )
    co_seen = {m["raw_material"]: m for m in seen["supply_chain_due_diligence_report"]["raw_materials"]}["cobalt"]
    assert co_seen["origins"][0]["participant_id"] == chain.mine.id and co_seen["origins"][0]["name"]
    assert seen["supply_chain_due_diligence_report"]["due_diligence_policy"] is None


async def test_only_who_may_read_the_lot_asks(system: System, chain: Chain) -> None:
    for path in ("responsible-share", "battery-passport/due-diligence"):
        outsider = await system.audit.get(f"/lots/{chain.battery}/{path}", headers=chain.outsider.auth)
        missing = await system.audit.get(f"/lots/NO-SUCH-LOT/{path}", headers=chain.outsider.auth)
        assert outsider.status_code == missing.status_code == 404, (outsider.text, missing.text)
        assert outsider.json()["detail"].replace(chain.battery, "X") == missing.json()["detail"].replace(
            "NO-SUCH-LOT", "X"
        )
        # the mine holds the ore only: the battery made from it downstream is not its to read
        assert (await system.audit.get(f"/lots/{chain.battery}/{path}", headers=chain.mine.auth)).status_code == 404
        # the refiner held the ore: it reads it
        assert (await system.audit.get(f"/lots/{chain.ore}/{path}", headers=chain.refiner.auth)).status_code == 200


async def test_a_regulator_reads_what_its_grant_opens(system: System, chain: Chain) -> None:
    s = system
    body = {"name": f"Battery authority {uuid.uuid4().hex[:6]}", "authority": "Reg. 2023/1542 art. 52", "country": "DE"}
    reg = await ok(await s.registry.post("/regulators", headers=OPERATOR, json=body))
    now = datetime.now(UTC)

    async def token(lots: list[str], participants: list[str]) -> dict[str, str]:
        grant = {
            "lots": lots,
            "participants": participants,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
            "reason": "battery passport check",
        }
        out = await ok(await s.registry.post(f"/regulators/{reg['id']}/grants", headers=OPERATOR, json=grant))
        return bearer(out["credential"]["token"])

    granted = await token([chain.battery], [])
    out = await ok(await s.audit.get(f"/lots/{chain.battery}/battery-passport/due-diligence", headers=granted), 200)
    co = {m["raw_material"]: m for m in out["supply_chain_due_diligence_report"]["raw_materials"]}["cobalt"]
    assert co["origins"][0]["participant_id"] == chain.mine.id  # a regulator reads what its grant opens in full
    share = await ok(await s.audit.get(f"/lots/{chain.battery}/responsible-share", headers=granted), 200)
    assert by(share["origins"])["irma:irma_75"]["evidence"][0]["participant_id"] == chain.mine.id
    elsewhere = await token([], [chain.outsider.id])
    for path in ("responsible-share", "battery-passport/due-diligence"):
        assert (await s.audit.get(f"/lots/{chain.battery}/{path}", headers=elsewhere)).status_code == 404
