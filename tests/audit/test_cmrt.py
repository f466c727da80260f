"""The CMRT and EMRT from custody data, through the real services (issue 25, part C).

One supply chain built through the registry's and custody's APIs:
- mine A (CD, its identity open to those downstream) sends tin ore to smelter S1 (RMI-listed, RMAP conformant), which
  smelts it into metal M1;
- mine B (PE, the default policy: only counterparties learn its name) and a recycler (scrap, DE) send ore and scrap
  to smelter S2 (no RMI id), which smelts both into metal M2;
- a cobalt mine (CD) sends ore to refiner S3 (RMI-listed), refined into cobalt metal M3;
- the manufacturer receives M1, M2 and M3, registers two products and consumes: 30 kg of M1 and 10 kg of M2 into
  product P1, 5 kg of M2 into P2, 7 kg of M3 into P1, all in the period, and 20 kg of M1 after it.

Its CMRT (JSON, XLSX opened with openpyxl and checked cell by cell against what the registry and custody hold, CSV),
its EMRT, the product and period filters, a mine's name withheld from the manufacturer and shown to the operator, a
truncated genealogy, and the bounds and refusals."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest
from openpyxl import load_workbook

from audit import filings_service
from audit.cmrt import SMELTER_LIST_HEADERS
from tests.audit.conftest import System
from tests.audit.test_scenario import certify, deliver, lot_body, ok
from tests.conftest import OPERATOR
from tests.custody.conftest import Party
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

PERIOD = {"from": "2026-01-01", "to": "2026-08-01"}
CD_NAME = "Congo, The Democratic Republic of the"


class Chain:
    mine_a: Party
    mine_b: Party
    recycler: Party
    s1: Party
    s2: Party
    s3: Party
    cobalt_mine: Party
    maker: Party
    other: Party
    names: dict[str, str]
    rmi: dict[str, str]
    ore_a: str
    ore_b: str
    scrap: str
    cobalt_ore: str
    p1: str
    p2: str


async def _party(s: System, c: Chain, kind: str, country: str, **extra: Any) -> Party:
    p = await s.party(kind, country, **extra)
    r = await ok(await s.registry.get(f"/participants/{p.id}", headers=OPERATOR), 200)
    c.names[p.id] = (r.get("participant") or r)["name"]
    return p


async def _smelt(s: System, who: Party, inputs: dict[str, float], mineral: str, out_kg: float, at: str) -> str:
    made = await ok(
        await s.custody.post(
            "/transformations",
            headers=who.auth,
            json={
                "kind": "smelting" if mineral == "tin" else "refining",
                "occurred_at": at,
                "custody_model": "mass_balance",
                "inputs": [{"lot_id": lot, "mass_kg": kg} for lot, kg in inputs.items()],
                "outputs": [{"mineral": mineral, "form": "metal", "mass_kg": out_kg}],
            },
        )
    )
    return str(made["outputs"][0]["lot_id"])


async def _consume(s: System, who: Party, lot: str, kg: float, product_id: str, at: str) -> None:
    await ok(
        await s.custody.post(
            f"/lots/{lot}/consumptions",
            headers=who.auth,
            json={"product_id": product_id, "mass_kg": kg, "consumed_at": at},
        ),
        201,
    )


@pytest.fixture(scope="module")
async def chain(system: System) -> Chain:
    s, c = system, Chain()
    c.names = {}
    c.rmi = {}
    c.mine_a = await _party(s, c, "mine", "CD", disclosure="downstream")
    c.mine_b = await _party(s, c, "mine", "PE")
    c.cobalt_mine = await _party(s, c, "mine", "CD", mining_type="lsm")
    c.recycler = await _party(s, c, "recycler", "DE")
    rmi1, rmi3 = (f"CID{uuid.uuid4().int % 10**6:06d}" for _ in range(2))
    c.s1 = await _party(s, c, "smelter", "MY", identifiers={"rmi_smelter_id": rmi1})
    c.s2 = await _party(s, c, "smelter", "ID")
    c.s3 = await _party(s, c, "refiner", "FI", identifiers={"rmi_smelter_id": rmi3})
    c.rmi = {c.s1.id: rmi1, c.s3.id: rmi3}
    c.maker = await _party(s, c, "manufacturer", "DE")
    c.other = await _party(s, c, "manufacturer", "FR")
    await certify(s, c.s1, scheme="rmap", status="conformant", valid_from="2026-01-01")

    c.ore_a = (await ok(await s.custody.post("/lots", headers=c.mine_a.auth, json=lot_body(100))))["lot_id"]
    c.ore_b = (await ok(await s.custody.post("/lots", headers=c.mine_b.auth, json=lot_body(100))))["lot_id"]
    c.cobalt_ore = (
        await ok(await s.custody.post("/lots", headers=c.cobalt_mine.auth, json=lot_body(100, mineral="cobalt")))
    )["lot_id"]
    scrap = {"mineral": "tin", "form": "alloy", "mass_kg": 50, "source": "scrap", "country": "DE"}
    c.scrap = (await ok(await s.custody.post("/lots/recycled", headers=c.recycler.auth, json=scrap)))["lot_id"]

    await deliver(s, c.ore_a, c.mine_a, c.s1, 100, shipped="2026-03-02T08:00:00Z", received="2026-03-03T08:00:00Z")
    await deliver(s, c.ore_b, c.mine_b, c.s2, 100, shipped="2026-03-02T08:00:00Z", received="2026-03-03T08:00:00Z")
    await deliver(s, c.scrap, c.recycler, c.s2, 50, shipped="2026-03-02T08:00:00Z", received="2026-03-03T08:00:00Z")
    await deliver(
        s, c.cobalt_ore, c.cobalt_mine, c.s3, 100, shipped="2026-03-02T08:00:00Z", received="2026-03-03T08:00:00Z"
    )
    m1 = await _smelt(s, c.s1, {c.ore_a: 100}, "tin", 60, "2026-03-10T08:00:00Z")
    m2 = await _smelt(s, c.s2, {c.ore_b: 100, c.scrap: 50}, "tin", 90, "2026-03-11T08:00:00Z")
    m3 = await _smelt(s, c.s3, {c.cobalt_ore: 100}, "cobalt", 40, "2026-03-12T08:00:00Z")
    for lot, who, kg in ((m1, c.s1, 60), (m2, c.s2, 90), (m3, c.s3, 40)):
        await deliver(s, lot, who, c.maker, kg, shipped="2026-04-01T08:00:00Z", received="2026-04-02T08:00:00Z")
    c.p1 = (await ok(await s.custody.post("/products", headers=c.maker.auth, json={"name": "Board", "gtin": None})))[
        "product_id"
    ]
    c.p2 = (await ok(await s.custody.post("/products", headers=c.maker.auth, json={"name": "Cable"})))["product_id"]
    await _consume(s, c.maker, m1, 30, c.p1, "2026-06-01T08:00:00Z")
    await _consume(s, c.maker, m2, 10, c.p1, "2026-06-02T08:00:00Z")
    await _consume(s, c.maker, m2, 5, c.p2, "2026-06-03T08:00:00Z")
    await _consume(s, c.maker, m3, 7, c.p1, "2026-06-04T08:00:00Z")
    await _consume(s, c.maker, m1, 20, c.p1, "2026-09-01T08:00:00Z")

    async def projected() -> bool:
        rows = await s.audit_rows("SELECT count(*) AS n FROM consumptions WHERE actor = $1", c.maker.id)
        return int(rows[0]["n"]) == 5

    await wait_for(projected, timeout_s=60, what="audit to project the consumptions")
    return c


def _row(c: Chain, smelter: Party, metal: str, country: str, mines: str | None, origins: str, recycled: str) -> list:
    rmi = c.rmi.get(smelter.id)
    name = c.names[smelter.id]
    return [
        rmi,
        metal,
        name if rmi else "Smelter not listed",
        None if rmi else name,
        country,
        rmi,
        "RMI" if rmi else None,
        None,
        None,
        None,
        None,
        None,
        None,
        mines,
        origins,
        recycled,
        None,
    ]


async def test_the_cmrt_lists_every_smelter_upstream_with_its_share_and_what_only_we_know(
    system: System, chain: Chain
) -> None:
    s, c = system, chain
    body = await ok(await s.audit.get("/filings/cmrt", params=PERIOD, headers=c.maker.auth), 200)
    assert body["metals"] == {"Tin": 45.0} and body["roots"] == 4 and not body["truncated"]
    rows = {r["participant_id"]: r for r in body["smelters"]}
    assert set(rows) == {c.s1.id, c.s2.id}  # not the cobalt refiner; no row for the recycler
    s1, s2 = rows[c.s1.id], rows[c.s2.id]
    assert (s1["share"], s2["share"]) == (0.666667, 0.333333)  # 30 of 45 kg, 15 of 45 kg
    assert s1["smelter_list"] == _row(c, c.s1, "Tin", "Malaysia", c.names[c.mine_a.id], CD_NAME, "No")
    # S2: no RMI id ("Smelter not listed"), mine B's name withheld from the manufacturer, the scrap in N and O
    assert s2["smelter_list"] == _row(c, c.s2, "Tin", "Indonesia", "scrap", "Peru; scrap", "No")
    assert (s2["mines"], s2["mines_withheld"], s2["recycled_sources"]) == ([], 1, ["scrap"])
    assert s1["rmap"] == [{"day": "2026-03-10", "status": "conformant"}]
    assert s2["rmap"] == [{"day": "2026-03-11", "status": "none"}]
    assert s2["origin_lots"] == sorted([c.ore_b, c.scrap])
    # the flags upstream, as the manufacturer may see them: those on the lots above each smelter
    seen = await ok(await s.audit.get("/flags", params={"limit": 500}, headers=c.maker.auth), 200)
    upstream_s2 = {c.ore_b, c.scrap}
    expected = [f for f in seen["items"] if set(f["lot_ids"]) & upstream_s2 and f["status"] != "withdrawn"]
    assert s2["flags"]["open"] + s2["flags"]["resolved"] >= len({f["id"] for f in expected})
    answers = {(a["question"], a["metal"]): a for a in body["declaration"]}
    covered = answers[("covered_countries", "Tin")]
    assert covered["answer"] == "Yes" and covered["evidence"]["lots"] == [c.ore_a]
    assert answers[("recycled_or_scrap", "Tin")]["answer"] == "No"
    identified = answers[("all_smelters_identified", "Tin")]
    assert identified["answer"] == "Yes" and identified["evidence"]["not_rmi_listed"] == [c.s2.id]
    assert answers[("all_from_smelters_found", "Tin")]["answer"] == "Yes"
    assert answers[("company_A", None)]["answer"] is None  # no self-assessment: unanswered


async def test_the_workbook_is_the_template_layout_cell_by_cell(system: System, chain: Chain) -> None:
    s, c = system, chain
    r = await s.audit.get("/filings/cmrt.xlsx", params=PERIOD, headers=c.maker.auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Smelter List", "Custody evidence", "Declaration"]
    ws = wb["Smelter List"]
    assert [ws.cell(row=4, column=i).value for i in range(1, 18)] == list(SMELTER_LIST_HEADERS)
    assert ws.cell(row=4, column=8).value == "Smelter Street "  # the template's trailing space
    assert "\u2019" in str(ws.cell(row=4, column=16).value)
    expected = [
        _row(c, c.s1, "Tin", "Malaysia", c.names[c.mine_a.id], CD_NAME, "No"),
        _row(c, c.s2, "Tin", "Indonesia", "scrap", "Peru; scrap", "No"),
    ]
    got = [[ws.cell(row=n, column=i).value for i in range(1, 18)] for n in range(5, ws.max_row + 1)]
    assert got == expected
    ev = wb["Custody evidence"]
    head = [cell.value for cell in ev[1]]
    shares = {ev.cell(row=n, column=head.index("Participant id") + 1).value: n for n in range(2, ev.max_row + 1)}
    col = head.index("Share of the filer's mass of this metal") + 1
    assert ev.cell(row=shares[c.s1.id], column=col).value == 0.666667
    assert ev.cell(row=shares[c.s2.id], column=head.index("Mines whose names are withheld") + 1).value == 1
    dec = wb["Declaration"]
    questions = {(dec.cell(row=n, column=1).value, dec.cell(row=n, column=2).value) for n in range(2, dec.max_row + 1)}
    assert ("covered_countries", "Tin") in questions and ("company_J", None) in questions

    text = (await s.audit.get("/filings/cmrt.csv", params=PERIOD, headers=c.maker.auth)).content.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][:17] == list(SMELTER_LIST_HEADERS)
    assert [[v or None for v in line[:17]] for line in lines[1:]] == expected


async def test_products_and_period_choose_the_roots(system: System, chain: Chain) -> None:
    s, c = system, chain
    p1 = await ok(await s.audit.get("/filings/cmrt", params={**PERIOD, "product": c.p1}, headers=c.maker.auth), 200)
    assert {r["participant_id"]: r["share"] for r in p1["smelters"]} == {c.s1.id: 0.75, c.s2.id: 0.25}
    assert [p["product_id"] for p in p1["products"]] == [c.p1]
    p2 = await ok(await s.audit.get("/filings/cmrt", params={**PERIOD, "product": c.p2}, headers=c.maker.auth), 200)
    assert {r["participant_id"]: r["share"] for r in p2["smelters"]} == {c.s2.id: 1.0}
    later = {"from": "2026-08-01", "to": "2026-12-01"}
    after = await ok(await s.audit.get("/filings/cmrt", params=later, headers=c.maker.auth), 200)
    assert {r["participant_id"]: r["share"] for r in after["smelters"]} == {c.s1.id: 1.0}
    assert after["metals"] == {"Tin": 20.0}


async def test_the_emrt_lists_the_cobalt_refiner(system: System, chain: Chain) -> None:
    s, c = system, chain
    body = await ok(await s.audit.get("/filings/emrt", params=PERIOD, headers=c.maker.auth), 200)
    assert body["metals"] == {"Cobalt": 7.0}
    [row] = body["smelters"]
    assert row["participant_id"] == c.s3.id and row["share"] == 1.0
    assert row["smelter_list"] == _row(c, c.s3, "Cobalt", "Finland", None, CD_NAME, "No")
    assert row["mines_withheld"] == 1  # the cobalt mine keeps the default policy
    r = await s.audit.get("/filings/emrt.xlsx", params=PERIOD, headers=c.maker.auth)
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Smelter List", "Custody evidence", "Declaration", "Mine List"]
    ws = wb["Smelter List"]
    assert [ws.cell(row=5, column=i).value for i in range(1, 18)] == row["smelter_list"]
    assert ws.max_row == 5
    mine_list = wb["Mine List"]
    assert [[cell.value for cell in r] for r in mine_list.iter_rows(min_row=2)] == [
        ["Cobalt", c.names[c.s3.id], None, CD_NAME]  # the cobalt mine's name withheld, its country given
    ]


async def test_the_operator_learns_every_mine_and_files_for_anyone(system: System, chain: Chain) -> None:
    s, c = system, chain
    body = await ok(
        await s.audit.get("/filings/cmrt", params={**PERIOD, "participant": c.maker.id}, headers=OPERATOR), 200
    )
    s2 = next(r for r in body["smelters"] if r["participant_id"] == c.s2.id)
    assert s2["mines"] == [c.names[c.mine_b.id]] and s2["mines_withheld"] == 0
    assert s2["smelter_list"][13] == f"{c.names[c.mine_b.id]}; scrap"


async def test_a_truncated_genealogy_says_so(system: System, chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    s, c = system, chain
    monkeypatch.setattr(filings_service, "MAX_DEPTH", 0)
    body = await ok(await s.audit.get("/filings/cmrt", params=PERIOD, headers=c.maker.auth), 200)
    assert body["truncated"] and body["smelters"] == []
    answers = {(a["question"], a["metal"]): a["answer"] for a in body["declaration"]}
    assert answers[("all_from_smelters_found", "Tin")] == "No"
    assert answers[("covered_countries", "Tin")] == "Unknown"
    assert answers[("recycled_or_scrap", "Tin")] == "Unknown"


async def test_bounds_and_refusals(system: System, chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    s, c = system, chain

    async def status(path: str, params: dict[str, Any], headers: dict[str, str]) -> int:
        r = await s.audit.get(path, params=params, headers=headers)
        assert r.headers["content-type"].startswith("application/problem+json") or r.status_code == 200, r.text
        return r.status_code

    maker = c.maker.auth
    assert await status("/filings/cmrt", {"from": "2026-02-01", "to": "2026-01-01"}, maker) == 422
    assert await status("/filings/cmrt", {"from": "2026-01-01", "to": "2027-03-01"}, maker) == 422
    assert await status("/filings/cmrt", {"from": "2026-01-01"}, maker) == 422
    assert await status("/filings/cmrt", {**PERIOD, "product": [f"x{i}" for i in range(51)]}, maker) == 422
    assert await status("/filings/cmrt", {**PERIOD, "basis": "stolen"}, maker) == 422
    # another's product is the same 404 as an unknown one
    assert await status("/filings/cmrt", {**PERIOD, "product": c.p1}, c.other.auth) == 404
    assert await status("/filings/cmrt", {**PERIOD, "product": "nope:none"}, maker) == 404
    assert await status("/filings/cmrt", {**PERIOD, "participant": c.other.id}, maker) == 403
    assert await status("/filings/cmrt", PERIOD, OPERATOR) == 422  # whose?
    assert await status("/filings/cmrt.xlsx", {**PERIOD, "participant": "nobody"}, OPERATOR) == 404
    assert (await s.audit.get("/filings/cmrt", params=PERIOD)).status_code == 401
    monkeypatch.setattr(filings_service, "MAX_ROOTS", 3)
    r = await s.audit.get("/filings/cmrt", params=PERIOD, headers=maker)
    assert r.status_code == 422 and "narrow the period" in r.text
    received = await ok(await s.audit.get("/filings/cmrt", params={**PERIOD, "basis": "received"}, headers=maker), 200)
    assert {row["participant_id"] for row in received["smelters"]} == {c.s1.id, c.s2.id}


async def test_company_answers_come_from_the_filers_latest_self_assessment(system: System, chain: Chain) -> None:
    s, c = system, chain
    q = await ok(await s.registry.get("/self-assessment/questionnaire", headers=c.maker.auth), 200)
    answers = [
        {"question_id": x["id"], "answer": "yes" if x["answer_type"] == "yes_no" else "na"} for x in q["questions"]
    ]
    sent = await ok(
        await s.registry.post(
            f"/participants/{c.maker.id}/self-assessments",
            headers=c.maker.auth,
            json={"questionnaire_version": q["questionnaire_version"], "answers": answers},
        )
    )
    assessment_id = sent.get("assessment_id") or sent["id"]

    async def projected() -> bool:
        return bool(await s.audit_rows("SELECT 1 FROM self_assessments WHERE assessment_id = $1", assessment_id))

    await wait_for(projected, timeout_s=30, what="audit to project the self-assessment")
    body = await ok(await s.audit.get("/filings/cmrt", params=PERIOD, headers=c.maker.auth), 200)
    company = {a["question"]: a for a in body["declaration"] if a["metal"] is None}
    assert list(company) == [f"company_{x}" for x in "ABCDEFGHIJ"]
    assert company["company_A"]["answer"] == "Yes"
    assert company["company_A"]["evidence"]["assessment_id"] == assessment_id


async def test_a_filing_past_its_time_is_a_503_and_holds_nothing(
    system: System, chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, c = system, chain

    async def slow(conn: Any, *args: Any, **kw: Any) -> Any:
        await conn.execute("SELECT pg_sleep(2)")

    monkeypatch.setattr(filings_service, "TIMEOUT_MS", 200)
    monkeypatch.setattr(filings_service.repository, "upstream_graph", slow)
    r = await s.audit.get("/filings/cmrt", params=PERIOD, headers=c.maker.auth)
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json"), r.text
    monkeypatch.undo()
    assert (await s.audit.get("/filings/cmrt", params=PERIOD, headers=c.maker.auth)).status_code == 200
