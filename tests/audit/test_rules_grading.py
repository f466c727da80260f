"""Graded as the schemes grade (issue 23, H1), without I/O: RMAP (Conformant, Active, the rest), CRAFT/Fairmined
(certified, committed, uncertified), IRMA levels (none, Transparency, 50, 75, 100), whoever smelts screened as a
smelter (a trader turning ore into metal), the horizons and re-judgements of these, and a re-judgement carrying its
severity. Through the broker: tests/audit/test_scenario.py (`test_grading_...`); a late IRMA level re-judging a flag's
severity in the database: tests/audit/test_grading_rejudged.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from audit import rules
from audit.projection import screening
from audit.projection.context import Context
from audit.projection.decode import TransformationRecord
from audit.projection.flags import Cleared, Why, rejudge_args
from audit.projection.handlers import transformations
from audit.projection.journal import Journal
from audit.projection.state import MineLot, State
from audit.rules import Area, Cert, Finding, Rule, Severity, Thresholds

ON = date(2026, 3, 1)
AT = datetime(2026, 3, 1, 10, tzinfo=UTC)
AREAS = [Area("A-CD", "CD", None, date(2020, 1, 1), None, "EU CAHRA list")]


def smelt(
    certs: list[Cert],
    actor_kind: str = "smelter",
    kind: str = "smelting",
    inputs: tuple[str, ...] = ("ore",),
    outputs: tuple[str, ...] = ("metal",),
) -> list[Finding]:
    return rules.smelter_findings(
        lot_ids=["O1", "O2"],
        transformation_id="T1",
        event_id="E1",
        actor="P1",
        actor_kind=actor_kind,
        on=ON,
        certs=certs,
        kind=kind,
        input_forms=inputs,
        output_forms=outputs,
    )


def rmap(status: str, seq: int = 1, valid_from: date = date(2020, 1, 1)) -> Cert:
    return Cert("rmap", status, valid_from, None, seq)


# --- RMAP graded ------------------------------------------------------------------------------------------------


def test_rmap_conformant_raises_nothing() -> None:
    assert smelt([rmap("conformant")]) == []


def test_rmap_active_is_a_finding_of_its_own_at_medium() -> None:
    [f] = smelt([rmap("active")])
    assert f.rule is Rule.smelter_rmap_active and f.level is Severity.medium
    assert (f.lot_id, f.also, f.cause) == ("O1", ("O2",), "T1")
    assert f.evidence["rmap_status"] == "active"
    assert "Active" in f.summary and "not yet Conformant" in f.summary


@pytest.mark.parametrize("status", ["non_conformant", "suspended", None])
def test_non_conformant_suspended_or_none_are_as_serious_as_each_other(status: str | None) -> None:
    [f] = smelt([rmap(status)] if status else [])
    assert f.rule is Rule.smelter_not_rmap_conformant and f.level is Severity.high
    assert f.evidence["rmap_status"] == (status or "none")


def test_active_is_less_serious_than_not_conformant() -> None:
    [active] = smelt([rmap("active")])
    [none] = smelt([])
    assert rules.SEVERITY_ORDER[active.level] < rules.SEVERITY_ORDER[none.level]


def test_an_active_status_suspended_later_on_record_is_not_conformant() -> None:
    [f] = smelt([rmap("active", 1), rmap("suspended", 2)])
    assert f.rule is Rule.smelter_not_rmap_conformant


# --- whoever smelts is screened as a smelter ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "actor_kind", "inputs", "outputs", "basis"),
    [
        ("smelting", "smelter", ("ore",), ("metal",), "actor_kind"),
        ("processing", "refiner", ("metal",), ("metal",), "actor_kind"),
        ("smelting", "trader", (), (), "kind"),
        ("refining", "recycler", ("alloy",), ("metal",), "kind"),
        ("processing", "trader", ("ore",), ("metal",), "forms"),
        ("merge", "trader", ("concentrate", "metal"), ("metal", "concentrate"), "forms"),
        ("processing", "recycler", ("product",), ("metal",), None),  # scrap into metal: not ore or concentrate
        ("split", "trader", ("ore",), ("ore",), None),
        ("processing", "trader", ("concentrate",), ("concentrate",), None),
        ("alloying", "component_manufacturer", ("metal",), ("alloy",), None),
    ],
)
def test_smelts_whoever_turns_ore_or_concentrate_into_metal(
    kind: str, actor_kind: str, inputs: tuple[str, ...], outputs: tuple[str, ...], basis: str | None
) -> None:
    assert rules.smelting_basis(kind, actor_kind, inputs, outputs) == basis
    assert rules.smelts(kind, actor_kind, inputs, outputs) is (basis is not None)


def test_a_trader_smelting_ore_into_metal_without_rmap_is_flagged_and_named_as_a_trader() -> None:
    [f] = smelt([], actor_kind="trader", kind="processing")
    assert f.rule is Rule.smelter_not_rmap_conformant and f.level is Severity.high
    assert f.summary.startswith("Trader smelting or refining (ore or concentrate into metal) without RMAP")
    assert f.evidence["actor_kind"] == "trader"
    assert f.evidence["transformation_kind"] == "processing"
    assert f.evidence["screened_as_smelter_by"] == "forms"
    assert f.participants == ("P1",)


def test_a_recycler_recording_a_refining_is_graded_by_rmap_too() -> None:
    assert smelt([rmap("conformant")], actor_kind="recycler", kind="refining", inputs=("product",)) == []
    [f] = smelt([rmap("active")], actor_kind="recycler", kind="refining", inputs=("product",))
    assert f.rule is Rule.smelter_rmap_active
    assert f.summary.startswith("Recycler smelting or refining (recorded as refining) RMAP Active")


def test_a_trader_splitting_metal_is_not_a_smelter() -> None:
    assert smelt([], actor_kind="trader", kind="split", inputs=("metal",), outputs=("metal",)) == []


def record(by_kind: str, kind: str, in_form: str, out_form: str, tid: str = "TRF-1") -> TransformationRecord:
    inputs = [{"lot_id": f"{tid}-IN", "mineral": "tin", "form": in_form, "mass_kg": "1000.000"}]
    outputs = [{"lot_id": f"{tid}-OUT", "mineral": "tin", "form": out_form, "mass_kg": "700.000"}]
    return TransformationRecord(
        tid, kind, "P1", by_kind, AT, inputs, outputs, [f"{tid}-IN"], [f"{tid}-OUT"], f"ev-{tid}", AT
    )


def new_context() -> Context:
    return Context(State(), Thresholds(), Journal())


def test_the_handler_screens_a_trader_posting_a_smelting_of_ore_into_metal() -> None:
    """The hole: the RMAP check looked at the participant's kind, so a trader's smelting escaped it."""
    ctx = new_context()
    transformations.on_recorded(ctx, record("trader", "processing", "ore", "metal"))
    smelting = ctx.state.smeltings["TRF-1"]
    assert (smelting.kind, smelting.input_forms, smelting.output_forms) == ("processing", ("ore",), ("metal",))
    assert ctx.state.smeltings_by_actor["P1"] == ["TRF-1"]
    f = ctx.changes.findings[(Rule.smelter_not_rmap_conformant, "TRF-1")]
    assert f.lot_id == "TRF-1-OUT" and f.evidence["actor_kind"] == "trader"


def test_the_handler_keeps_no_forms_when_the_kind_decides() -> None:
    ctx = new_context()
    transformations.on_recorded(ctx, record("smelter", "smelting", "ore", "metal"))
    assert (ctx.state.smeltings["TRF-1"].input_forms, ctx.state.smeltings["TRF-1"].output_forms) == ((), ())


def test_the_handler_leaves_a_trader_s_split_alone() -> None:
    ctx = new_context()
    transformations.on_recorded(ctx, record("trader", "split", "metal", "metal"))
    assert "TRF-1" not in ctx.state.smeltings
    assert not [k for k in ctx.changes.findings if k[0] in (Rule.smelter_not_rmap_conformant, "smelter_rmap_active")]


# --- horizons and re-judgement of a smelting --------------------------------------------------------------------


def certify(ctx: Context, participant: str, known_at: datetime, scheme: str, value: str, cid: str) -> None:
    ctx.state.certs.setdefault(participant, []).append((known_at, cid, scheme, value, date(2020, 1, 1), None))
    ctx.state.certs[participant].sort()


WHY = Why({"certification": "c-2"}, "certification rmap")


def test_a_later_conformant_certification_clears_the_active_flag() -> None:
    ctx = new_context()
    certify(ctx, "P1", AT - timedelta(days=1), "rmap", "active", "c-1")
    transformations.on_recorded(ctx, record("smelter", "smelting", "ore", "metal"))
    assert (Rule.smelter_rmap_active, "TRF-1") in ctx.changes.findings
    ctx.changes = type(ctx.changes)()
    certify(ctx, "P1", AT + timedelta(days=30), "rmap", "conformant", "c-2")  # the assessment's outcome, later
    screening.smelter(ctx, "TRF-1", WHY)
    key = (Rule.smelter_rmap_active, "TRF-1")
    assert ctx.changes.rejudged[key] == Cleared(Rule.smelter_rmap_active, "TRF-1", "TRF-1-OUT", WHY)
    assert all(isinstance(v, Cleared) for v in ctx.changes.rejudged.values())  # nothing holds any more
    assert ctx.changes.findings == {}


def test_a_later_non_conformant_outcome_replaces_the_active_flag() -> None:
    ctx = new_context()
    certify(ctx, "P1", AT - timedelta(days=1), "rmap", "active", "c-1")
    transformations.on_recorded(ctx, record("smelter", "smelting", "ore", "metal"))
    ctx.changes = type(ctx.changes)()
    certify(ctx, "P1", AT + timedelta(days=30), "rmap", "non_conformant", "c-2")
    screening.smelter(ctx, "TRF-1", WHY)
    assert isinstance(ctx.changes.rejudged[(Rule.smelter_rmap_active, "TRF-1")], Cleared)
    raised = ctx.changes.findings[(Rule.smelter_not_rmap_conformant, "TRF-1")]
    assert raised.evidence["rmap_status"] == "non_conformant"


def test_no_status_at_the_time_stays_flagged_when_conformant_is_known_later() -> None:
    """Unchanged: what was known when the smelting was recorded still counts (the union over the horizons); only
    Active, an assessment under way, gives way to its outcome."""
    ctx = new_context()
    transformations.on_recorded(ctx, record("smelter", "smelting", "ore", "metal"))
    ctx.changes = type(ctx.changes)()
    certify(ctx, "P1", AT + timedelta(days=30), "rmap", "conformant", "c-2")
    screening.smelter(ctx, "TRF-1", WHY)
    assert not isinstance(ctx.changes.rejudged[(Rule.smelter_not_rmap_conformant, "TRF-1")], Cleared)


def test_a_replay_knowing_everything_raises_no_active_flag() -> None:
    ctx = new_context()
    certify(ctx, "P1", AT - timedelta(days=1), "rmap", "active", "c-1")
    certify(ctx, "P1", AT + timedelta(days=30), "rmap", "conformant", "c-2")
    transformations.on_recorded(ctx, record("smelter", "smelting", "ore", "metal"))
    assert not [k for k in ctx.changes.findings if k[1] == "TRF-1"]


def test_smelter_keys_cover_both_rmap_rules() -> None:
    assert set(screening.smelter_keys("T1")) == {
        (Rule.smelter_not_rmap_conformant, "T1"),
        (Rule.smelter_rmap_active, "T1"),
    }


# --- CRAFT and Fairmined ----------------------------------------------------------------------------------------


def origin(mining_type: str | None, certs: list[Cert], areas: list[Area] = AREAS) -> list[Finding]:
    return rules.origin_findings(
        lot_id="L1",
        event_id="E1",
        mine="M1",
        country="CD",
        region="CD-SK",
        mining_type=mining_type,
        on=ON,
        areas=areas,
        certs=certs,
    )


def cert(scheme: str, value: str, seq: int = 1) -> Cert:
    return Cert(scheme, value, date(2020, 1, 1), None, seq)


def test_craft_committed_asm_in_a_cahra_is_low_not_critical() -> None:
    """The hole: `committed` got the critical uncertified flag."""
    [f] = origin("asm", [cert("craft", "committed")])
    assert f.rule is Rule.committed_asm_in_cahra and f.level is Severity.low
    assert f.cause == "L1:origin" and f.evidence["certification"] == "craft:committed"
    assert "progressive-improvement" in f.summary


@pytest.mark.parametrize(
    "held", [("craft", "progressing"), ("craft", "conformant"), ("fairmined", "certified"), ("itsci", "member")]
)
def test_progressing_conformant_and_certified_asm_are_included_on_equal_terms(held: tuple[str, str]) -> None:
    [f] = origin("asm", [cert(*held)])
    assert f.rule is Rule.certified_asm_in_cahra and f.level is Severity.info
    assert f.evidence["certification"] == ":".join(held)


@pytest.mark.parametrize("held", [None, ("craft", "suspended"), ("fairmined", "withdrawn"), ("itsci", "suspended")])
def test_suspended_withdrawn_or_no_asm_certification_is_uncertified(held: tuple[str, str] | None) -> None:
    [f] = origin("asm", [cert(*held)] if held else [])
    assert f.rule is Rule.uncertified_asm_in_cahra and f.level is Severity.critical
    assert f.evidence["certification"] == (":".join(held) if held else None)


def test_a_certifying_scheme_beats_a_committed_one_and_committed_beats_a_suspended_one() -> None:
    both = [cert("craft", "committed", 1), cert("fairmined", "certified", 2)]
    assert [f.rule for f in origin("asm", both)] == [Rule.certified_asm_in_cahra]
    mixed = [cert("fairmined", "suspended", 1), cert("craft", "committed", 2)]
    assert [f.rule for f in origin("asm", mixed)] == [Rule.committed_asm_in_cahra]


def test_craft_committed_then_suspended_on_record_is_uncertified() -> None:
    assert [f.rule for f in origin("asm", [cert("craft", "committed", 1), cert("craft", "suspended", 2)])] == [
        Rule.uncertified_asm_in_cahra
    ]


def test_committed_asm_outside_a_cahra_raises_nothing() -> None:
    assert origin("asm", [cert("craft", "committed")], areas=[]) == []


def test_origin_keys_let_each_grade_clear_the_others() -> None:
    keys = screening.origin_keys("L1", "M1")
    committed = origin("asm", [cert("craft", "committed")])
    certified = origin("asm", [cert("craft", "progressing")])
    assert (Rule.committed_asm_in_cahra, "L1:origin") in screening.cleared(keys, certified)
    assert (Rule.certified_asm_in_cahra, "L1:origin") in screening.cleared(keys, committed)
    assert (Rule.committed_asm_in_cahra, "L1:origin") not in screening.cleared(keys, committed)
    transparency = origin("lsm", [cert("irma", "transparency")], areas=[])
    achieved = origin("lsm", [cert("irma", "irma_50")], areas=[])
    assert (Rule.lsm_irma_transparency, "M1:irma:L1") in screening.cleared(keys, achieved)
    assert (Rule.lsm_irma_transparency, "M1:irma:L1") not in screening.cleared(keys, transparency)


# --- IRMA levels ------------------------------------------------------------------------------------------------


def test_an_lsm_without_irma_is_low_and_says_so() -> None:
    [f] = origin("lsm", [], areas=[])
    assert f.rule is Rule.lsm_without_irma and f.level is Severity.low
    assert f.evidence["irma_level"] is None


def test_irma_transparency_is_visible_and_told_apart_from_none() -> None:
    """The hole: IRMA Transparency and IRMA 100 gave identical results."""
    [f] = origin("lsm", [cert("irma", "transparency")], areas=[])
    assert f.rule is Rule.lsm_irma_transparency and f.level is Severity.info
    assert f.cause == "M1:irma:L1" and f.evidence["irma_level"] == "transparency"
    assert "IRMA Transparency" in f.summary


@pytest.mark.parametrize("level", ["irma_50", "irma_75", "irma_100"])
def test_an_irma_achievement_level_raises_no_irma_finding(level: str) -> None:
    assert origin("lsm", [cert("irma", level)], areas=[]) == []


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (None, Severity.high),
        ("transparency", Severity.high),
        ("irma_50", Severity.high),
        ("irma_75", Severity.medium),
        ("irma_100", Severity.medium),
    ],
)
def test_in_a_cahra_irma_75_or_100_makes_the_origin_finding_medium(level: str | None, severity: Severity) -> None:
    found = {f.rule: f for f in origin("lsm", [cert("irma", level)] if level else [])}
    f = found[Rule.origin_in_cahra]
    assert f.level is severity
    assert f.evidence["irma_level"] == level  # every origin finding of an LSM names its IRMA level
    for other in found.values():
        assert other.evidence["irma_level"] == level


def test_irma_75_and_transparency_in_a_cahra_differ() -> None:
    high = {(f.rule, f.level) for f in origin("lsm", [cert("irma", "transparency")])}
    medium = {(f.rule, f.level) for f in origin("lsm", [cert("irma", "irma_75")])}
    assert high == {(Rule.origin_in_cahra, Severity.high), (Rule.lsm_irma_transparency, Severity.info)}
    assert medium == {(Rule.origin_in_cahra, Severity.medium)}


def test_an_irma_level_lapsed_on_the_day_does_not_count() -> None:
    lapsed = Cert("irma", "irma_75", date(2020, 1, 1), ON - timedelta(days=1), 1)
    found = {f.rule: f for f in origin("lsm", [lapsed])}
    assert found[Rule.origin_in_cahra].level is Severity.high
    assert Rule.lsm_without_irma in found


def test_asm_and_unknown_mining_types_name_no_irma_level() -> None:
    assert "irma_level" not in origin("asm", [cert("irma", "irma_75")])[0].evidence
    assert "irma_level" not in origin(None, [])[0].evidence


# --- a re-judgement carries its severity ------------------------------------------------------------------------


def test_rejudge_args_carry_each_finding_s_severity() -> None:
    [medium] = [f for f in origin("lsm", [cert("irma", "irma_75")]) if f.rule is Rule.origin_in_cahra]
    [critical] = origin("asm", [])
    gone = Cleared(Rule.lsm_without_irma, "M1:irma:L1", "L1", WHY)
    args = rejudge_args([medium, critical, gone])
    assert args[5] == ["medium", "critical", None]  # None: a cleared flag keeps its severity
    assert args[4] == [False, False, True]


def test_an_origin_re_judged_with_a_late_irma_75_comes_with_medium() -> None:
    """An IRMA 75 assessment known before the lot, delivered after it: the re-judged origin finding is medium."""
    ctx = new_context()
    area: tuple[datetime, Area] = (AT - timedelta(days=9), AREAS[0])
    ctx.state.areas["A-CD"] = area
    ctx.state.areas_by_country["CD"] = [(area[0], "A-CD")]
    lot = MineLot("L1", "ev-1", "M1", "CD", "CD-SK", "lsm", AT, AT)
    ctx.state.mine_lots["L1"] = lot
    screening.origin(ctx, "L1")
    assert ctx.changes.findings[(Rule.origin_in_cahra, "L1:origin")].level is Severity.high
    ctx.changes = type(ctx.changes)()
    certify(ctx, "M1", AT - timedelta(days=1), "irma", "irma_75", "c-9")
    screening.origin(ctx, "L1", WHY)
    rejudged: Any = ctx.changes.rejudged[(Rule.origin_in_cahra, "L1:origin")]
    assert isinstance(rejudged, Finding) and rejudged.level is Severity.medium
    assert rejudge_args([rejudged])[5] == ["medium"]
    assert isinstance(ctx.changes.rejudged[(Rule.lsm_without_irma, "M1:irma:L1")], Cleared)


def test_the_yield_rule_still_runs_for_a_trader_s_smelting() -> None:
    ctx = new_context()
    ev = record("trader", "processing", "ore", "metal")
    ev.outputs[0]["mass_kg"] = str(Decimal("990.000"))  # tin's maximum yield is 0.80
    transformations.on_recorded(ctx, ev)
    assert (Rule.yield_exceeded, "TRF-1:tin") in ctx.changes.findings


def test_the_grades_speak_the_registry_s_vocabulary() -> None:
    from registry.domain import SCHEME_VALUES

    allowed = {str(k): v for k, (_, v) in SCHEME_VALUES.items()}
    assert rules.IRMA_ACHIEVED | {"transparency"} == allowed["irma"]
    assert rules.IRMA_CAHRA_MITIGATED < rules.IRMA_ACHIEVED
    for scheme, values in rules.COMMITTED_ASM.items():
        assert values <= allowed[scheme]
    assert set(rules.ASM_SCHEMES) == set(rules.CERTIFIED_ASM)
    assert {"conformant", "active"} <= allowed["rmap"]
