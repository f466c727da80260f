"""`audit.cmrt.build` on graphs made by hand (pure): which smelters are listed and how, recycled-only feedstock, a
trader screened as a smelter, smelters in series, 0-share rows, a cut genealogy, declared origins in the covered
countries, and the company-level answers from a self-assessment."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from audit.cmrt import NOT_LISTED, FlagSeen, RootUse, build
from audit.filings_domain import Graph, LotFacts, PartyFacts, Step
from audit.rules import Cert
from shared.vocab import CMRT_METALS, EMRT_MINERALS

AT = datetime(2026, 3, 10, 8, tzinfo=UTC)


def lot(lot_id: str, form: str, kind: str, who: str | None = None, country: str | None = None, **kw: str) -> LotFacts:
    return LotFacts(
        lot_id,
        kw.get("mineral", "tin"),
        form,
        Decimal(100),
        kind,
        who,
        country,
        None,
        None,
        kw.get("source"),
        AT,
    )


def party(pid: str, kind: str, rmi: str | None = None, disclosure: str | None = None) -> PartyFacts:
    return PartyFacts(pid, kind, f"Name of {pid}", "MY", None, rmi, disclosure)


def step(tid: str, actor: str, kind: str, inputs: dict[str, int], outputs: list[str], actor_kind: str) -> Step:
    return Step(
        tid,
        kind,
        actor,
        actor_kind,
        AT,
        "mass_balance",
        tuple((i, Decimal(m)) for i, m in inputs.items()),
        tuple(outputs),
    )


def graph(*steps: Step, lots: list[LotFacts], parties: list[PartyFacts]) -> Graph:
    g = Graph()
    for s in steps:
        for o in s.outputs:
            g.made_by[o] = s
    g.lots = {f.lot_id: f for f in lots}
    g.parties = {p.id: p for p in parties}
    return g


def test_recycled_only_feedstock_says_yes_and_names_the_source() -> None:
    g = graph(
        step("T1", "S1", "smelting", {"R1": 50, "R2": 50}, ["M1"], "smelter"),
        lots=[
            lot("R1", "alloy", "recycled", "REC", "DE", source="scrap"),
            lot("R2", "alloy", "recycled", "REC", "DE", source="recycled"),
            lot("M1", "metal", "transformation", "S1"),
        ],
        parties=[party("S1", "smelter", "CID000001"), party("REC", "recycler")],
    )
    g.certs["S1"] = [Cert("rmap", "active", date(2026, 1, 1), None, 0)]
    f = build(g, [RootUse("M1", Decimal(10))], template="cmrt", minerals=CMRT_METALS, viewer="MAKER")
    [row] = f.rows
    assert (row.recycled_only, row.recycled, row.countries, row.share) == ("Yes", ["recycled", "scrap"], [], 1.0)
    assert row.rmap == [(date(2026, 3, 10), "active")]
    listed = row.smelter_list()
    assert listed[:7] == ["CID000001", "Tin", "Name of S1", None, "Malaysia", "CID000001", "RMI"]
    assert listed[13:16] == ["recycled; scrap", "recycled; scrap", "Yes"]
    answers = {a.question: a.answer for a in f.declaration if a.metal == "Tin"}
    assert answers == {
        "covered_countries": "No",
        "recycled_or_scrap": "Yes",
        "all_smelters_identified": "Yes",
        "all_from_smelters_found": "Yes",
    }


def test_a_trader_that_smelts_is_listed_marked_and_a_zero_share_smelter_never() -> None:
    g = graph(
        step("T1", "TR", "processing", {"O1": 100}, ["M1"], "trader"),  # ore in, metal out: screened as smelting
        step("T2", "S9", "smelting", {"O2": 100}, ["M2"], "smelter"),
        step("T3", "MK", "manufacturing", {"M1": 10, "M2": 0}, ["P1"], "manufacturer"),  # none of M2 drawn
        lots=[
            lot("O1", "ore", "mine", "MINE", "RW"),
            lot("O2", "ore", "mine", "MINE", "RW"),
            lot("M1", "metal", "transformation", "TR"),
            lot("M2", "metal", "transformation", "S9"),
            lot("P1", "product", "transformation", "MK"),
        ],
        parties=[party("TR", "trader"), party("S9", "smelter"), party("MINE", "mine", disclosure="public")],
    )
    flags = {"O1": [FlagSeen("F1", "uncertified_asm_in_cahra", "open"), FlagSeen("F2", "mass_mismatch", "resolved")]}
    f = build(g, [RootUse("P1", Decimal(4))], template="cmrt", minerals=CMRT_METALS, viewer="MAKER", flags=flags)
    assert [r.participant_id for r in f.rows] == ["TR"]  # none of M2 went into P1: S9's share is 0, no row
    [row] = f.rows
    assert row.marked and row.screened_as == "forms"
    listed = row.smelter_list()
    assert listed[2:4] == [NOT_LISTED, "Name of TR"] and listed[16] is not None  # column Q says why it is listed
    assert listed[13:15] == ["Name of MINE", "Rwanda"]  # a public mine's name
    assert (row.flags_open, row.flags_resolved) == (1, 1)
    assert row.flags_by_rule == {
        "mass_mismatch": {"open": 0, "resolved": 1},
        "uncertified_asm_in_cahra": {"open": 1, "resolved": 0},
    }
    answers = {a.question: a for a in f.declaration if a.metal == "Tin"}
    assert answers["covered_countries"].answer == "Yes" and answers["covered_countries"].evidence["countries"] == ["RW"]
    assert answers["all_smelters_identified"].evidence["not_rmi_listed"] == ["TR"]


def test_smelters_in_series_are_both_listed_and_a_cut_genealogy_is_unknown() -> None:
    g = graph(
        step("T1", "S1", "smelting", {"X1": 100}, ["M1"], "smelter"),
        step("T2", "R1", "refining", {"M1": 60, "D1": 40}, ["M2"], "refiner"),
        lots=[
            lot("X1", "concentrate", "transformation", "SOMEONE"),  # made upstream, beyond the walk: cut
            lot("D1", "concentrate", "declared", None, "CD"),
            lot("M1", "metal", "transformation", "S1"),
            lot("M2", "metal", "transformation", "R1"),
        ],
        parties=[party("S1", "smelter"), party("R1", "refiner", "CID000002")],
    )
    g.truncated = True
    f = build(g, [RootUse("M2", Decimal(10))], template="cmrt", minerals=CMRT_METALS, viewer=None)
    shares = {r.participant_id: r.share for r in f.rows}
    assert shares == {"R1": 1.0, "S1": 0.6}  # all of it passed the refiner, 60% the smelter before it
    s1 = next(r for r in f.rows if r.participant_id == "S1")
    assert s1.recycled_only == "Unknown" and s1.origin_lots == []
    answers = {a.question: a.answer for a in f.declaration if a.metal == "Tin"}
    assert answers["covered_countries"] == "Yes"  # the declared origin counts
    assert answers["all_from_smelters_found"] == "No" and answers["all_smelters_identified"] == "Unknown"


def test_company_answers_come_from_the_latest_self_assessment_with_its_id() -> None:
    g = graph(
        step("T1", "S1", "refining", {"C1": 10}, ["M1"], "refiner"),
        lots=[lot("C1", "ore", "mine", "MINE", "CD", mineral="cobalt"), lot("M1", "metal", "transformation", "S1")],
        parties=[party("S1", "refiner")],
    )
    g.lots["M1"] = LotFacts("M1", "cobalt", "metal", Decimal(5), "transformation", "S1", None, None, None, None, AT)
    assessment = {
        "assessment_id": "SA-1",
        "submitted_at": "2026-05-01T00:00:00+00:00",
        "cmrt_answers": {"A": {"answer": "Yes", "comment": None}, "H": {"answer": "No", "comment": "x"}},
    }
    f = build(
        g,
        [RootUse("M1", Decimal(5))],
        template="emrt",
        minerals=EMRT_MINERALS,
        viewer="MAKER",
        assessment=assessment,
        covered=frozenset({"CD"}),
    )
    assert [r.metal for r in f.rows] == ["Cobalt"]
    company = {a.question: a for a in f.declaration if a.metal is None}
    assert list(company) == [f"company_{x}" for x in "ABCDEFG"]  # the EMRT's A-G
    assert company["company_A"].answer == "Yes" and company["company_A"].evidence["assessment_id"] == "SA-1"
    assert company["company_B"].answer is None and company["company_B"].evidence == {}
    cmrt = build(g, [RootUse("M1", Decimal(5))], template="cmrt", minerals=CMRT_METALS, viewer="MAKER")
    assert cmrt.rows == [] and cmrt.metals == {}  # cobalt is no CMRT metal
