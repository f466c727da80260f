"""The responsibly-produced share of a lot (audit.shares), on graphs built here. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from audit.filings_domain import Graph, LotFacts, PartyFacts, Step
from audit.rules import Cert
from audit.shares import ResponsibleShare, ResponsibleShareOut, Share, as_out, responsible_share

MINED = datetime(2026, 3, 1, tzinfo=UTC)
SMELTED = datetime(2026, 6, 1, tzinfo=UTC)
MADE = datetime(2026, 9, 1, tzinfo=UTC)
SMELTING = {"smelting", "refining"}


def step(
    tid: str,
    inputs: dict[str, str],
    outputs: list[str],
    *,
    model: str | None = "segregated",
    kind: str = "smelting",
    actor: str = "smelter-1",
    actor_kind: str = "smelter",
    at: datetime = SMELTED,
) -> Step:
    return Step(
        tid, kind, actor, actor_kind, at, model, tuple((k, Decimal(v)) for k, v in inputs.items()), tuple(outputs)
    )


def lot(
    lot_id: str, *, kind: str = "mine", who: str | None = "mine-1", mining: str | None = "lsm", **kw: str
) -> LotFacts:
    return LotFacts(
        lot_id=lot_id,
        mineral=kw.get("mineral", "cobalt"),
        form=kw.get("form", "ore"),
        mass_kg=Decimal("1000"),
        origin_kind=kind,
        origin_participant=who,
        origin_country=kw.get("country", "CD"),
        origin_region=None,
        origin_mining_type=mining if kind == "mine" else None,
        origin_source=kw.get("source"),
        origin_at=MINED,
    )


def cert(scheme: str, value: str, since: date = date(2026, 1, 1), until: date | None = None, seq: int = 1) -> Cert:
    return Cert(scheme, value, since, until, seq)


def graph(
    *steps: Step, lots: list[LotFacts], certs: dict[str, list[Cert]] | None = None, truncated: bool = False
) -> Graph:
    g = Graph(truncated=truncated)
    for s in steps:
        for o in s.outputs:
            g.made_by[o] = s
            g.lots.setdefault(
                o, lot(o, kind="transformation", who=None, form="metal" if s.kind in SMELTING else "component")
            )
        g.parties.setdefault(s.actor, PartyFacts(s.actor, s.actor_kind, s.actor, "CN", None, None, None))
    for f in lots:
        g.lots[f.lot_id] = f
    g.certs.update(certs or {})
    return g


def by(shares: list[Share]) -> dict[str, Share]:
    return {f"{s.category}:{s.value}": s for s in shares}


def fractions(r: ResponsibleShare) -> tuple[float, float]:
    out = as_out(r)
    return sum(s.fraction for s in out.origins), sum(s.fraction for s in out.smelters)


def test_every_category_by_origin_and_by_smelter_adds_up_to_one() -> None:
    g = graph(
        step("smelt-1", {"ore-irma": "400"}, ["ingot-1"], actor="smelter-ok"),
        step("smelt-2", {"ore-craft": "200"}, ["ingot-2"], actor="smelter-active"),
        step(
            "assemble",
            {"ingot-1": "40", "ingot-2": "20", "scrap-1": "20", "ore-plain": "10", "ore-fm": "10"},
            ["product"],
            kind="assembly",
            actor="maker",
            actor_kind="manufacturer",
            at=MADE,
        ),
        lots=[
            lot("ore-irma", who="mine-irma"),
            lot("ore-craft", who="mine-craft", mining="asm"),
            lot("scrap-1", kind="recycled", who="recycler-1", source="scrap", form="metal"),
            lot("ore-plain", who="mine-plain"),
            lot("ore-fm", who="mine-fm", mining="asm"),
        ],
        certs={
            "mine-irma": [cert("irma", "irma_75")],
            "mine-craft": [cert("craft", "progressing")],
            "mine-fm": [cert("fairmined", "certified")],
            "smelter-ok": [cert("rmap", "conformant")],
            "smelter-active": [cert("rmap", "active")],
        },
    )
    r = responsible_share(g, "product", Decimal("100"))
    o = by(r.origins)
    assert {k: round(s.kg, 6) for k, s in o.items()} == {
        "irma:irma_75": 40,
        "asm:craft:progressing": 20,
        "recycled:scrap": 20,
        "none:lsm": 10,
        "asm:fairmined:certified": 10,
    }
    assert all(s.claim() == "physical" for k, s in o.items() if k != "none:lsm")  # segregated all the way
    assert o["none:lsm"].claim() == "none"
    assert o["irma:irma_75"].evidence[0].lot_id == "ore-irma"
    assert o["irma:irma_75"].evidence[0].scheme == "irma"
    assert o["irma:irma_75"].evidence[0].valid_from == "2026-01-01"
    assert o["irma:irma_75"].evidence[0].participant_id == "mine-irma"
    s = by(r.smelters)
    assert {k: round(v.kg, 6) for k, v in s.items()} == {
        "rmap:conformant": 40,
        "rmap:active": 20,
        "rmap:no_smelting": 40,
    }
    assert [e.participant_id for e in s["rmap:conformant"].evidence] == ["smelter-ok"]
    assert s["rmap:no_smelting"].claim() == "none"
    assert (s["rmap:conformant"].claim(), s["rmap:active"].claim()) == ("physical", "none")
    assert fractions(r) == (pytest.approx(1), pytest.approx(1))
    assert {p.transformation_id: p.passes for p in r.steps} == {
        "smelt-1": "physical",
        "smelt-2": "physical",
        "assemble": "physical",
    }


def test_mass_balance_keeps_a_mass_balance_claim_and_loses_the_physical_one() -> None:
    g = graph(
        step("smelt", {"ore-irma": "50", "ore-fm": "50"}, ["ingot"], model="mass_balance", actor="smelter-ok"),
        lots=[lot("ore-irma", who="mine-irma"), lot("ore-fm", who="mine-fm", mining="asm")],
        certs={"mine-irma": [cert("irma", "irma_50")], "mine-fm": [cert("fairmined", "certified")]},
    )
    out = as_out(responsible_share(g, "ingot", 10))
    o = {f"{s.category}:{s.value}": s for s in out.origins}
    irma = o["irma:irma_50"]
    assert (irma.kg, irma.physical_kg, irma.claim, irma.claimable_fraction) == (5, 0, "mass_balance", 0.5)
    # a Fairmined ore through a mass-balance mix: attributed, but no Fairmined claim
    fm = o["asm:fairmined:certified"]
    assert (fm.kg, fm.fraction, fm.claim, fm.claimable_kg, fm.claimable_fraction) == (5, 0.5, "physical", 0, 0)
    assert [p.passes for p in out.steps] == ["mass_balance"]


def test_no_model_on_record_is_a_mass_balance_claim() -> None:
    g = graph(
        step("smelt", {"ore-irma": "10"}, ["ingot"], model=None),
        lots=[lot("ore-irma", who="mine-irma")],
        certs={"mine-irma": [cert("irma", "irma_100")]},
    )
    r = responsible_share(g, "ingot", 10)
    assert by(r.origins)["irma:irma_100"].claim() == "mass_balance"
    assert r.steps[0].passes == "mass_balance"


def test_fairmined_segregated_then_mixed_claims_only_the_segregated_part() -> None:
    g = graph(
        step("smelt", {"ore-fm": "10"}, ["ingot"], model="segregated"),
        step("mix", {"ingot": "1", "ore-plain": "1"}, ["alloy"], model="mass_balance", kind="alloying", at=MADE),
        lots=[lot("ore-fm", who="mine-fm", mining="asm"), lot("ore-plain", who="mine-plain", mining="asm")],
        certs={"mine-fm": [cert("fairmined", "certified")]},
    )
    # 3 kg of the segregated ingot itself (physical) and 2 kg of the mass-balance alloy
    r1 = responsible_share(g, "ingot", 3)
    assert by(r1.origins)["asm:fairmined:certified"].claimable_kg() == pytest.approx(3)
    r2 = responsible_share(g, "alloy", 2)
    fm = by(r2.origins)["asm:fairmined:certified"]
    assert fm.kg == pytest.approx(1) and fm.claimable_kg() == 0


def test_book_and_claim_passes_no_claim_at_all() -> None:
    g = graph(
        step("smelt", {"ore-irma": "10"}, ["ingot"], actor="smelter-ok"),
        step("trade", {"ingot": "10"}, ["credit-ingot"], model="book_and_claim", kind="blending", at=MADE),
        lots=[lot("ore-irma", who="mine-irma")],
        certs={"mine-irma": [cert("irma", "irma_100")], "smelter-ok": [cert("rmap", "conformant")]},
    )
    r = responsible_share(g, "credit-ingot", 10)
    o = by(r.origins)
    assert list(o) == ["book_and_claim:book_and_claim"]
    assert o["book_and_claim:book_and_claim"].claim() == "none"
    assert o["book_and_claim:book_and_claim"].evidence[0].transformation_id == "trade"
    assert list(by(r.smelters)) == ["book_and_claim:book_and_claim"]  # the conformant smelting is not claimed
    assert [(p.transformation_id, p.passes, p.kg) for p in r.steps] == [("trade", "none", 10)]
    assert fractions(r) == (pytest.approx(1), pytest.approx(1))


def test_a_truncated_graph_leaves_an_unknown_share() -> None:
    # `ingot-old` was made by a transformation the walk did not reach
    g = graph(
        step(
            "mix",
            {"ingot-old": "30", "ore-irma": "70"},
            ["alloy"],
            kind="alloying",
            actor="maker",
            actor_kind="manufacturer",
        ),
        lots=[lot("ore-irma", who="mine-irma"), lot("ingot-old", kind="transformation", who=None, form="metal")],
        certs={"mine-irma": [cert("irma", "irma_75")]},
        truncated=True,
    )
    r = responsible_share(g, "alloy", 100)
    assert r.truncated
    assert by(r.origins)["unknown:unknown"].kg == pytest.approx(30)
    assert by(r.origins)["unknown:unknown"].evidence[0].lot_id == "ingot-old"
    assert by(r.smelters)["unknown:unknown"].kg == pytest.approx(30)
    assert by(r.smelters)["rmap:no_smelting"].kg == pytest.approx(70)
    assert fractions(r) == (pytest.approx(1), pytest.approx(1))
    # a lot with no facts at all is unknown too
    g.lots.pop("ore-irma")
    assert by(responsible_share(g, "alloy", 100).origins)["unknown:unknown"].kg == pytest.approx(100)


def test_certifications_count_on_the_day_a_lapsed_rmap_is_not_conformant() -> None:
    g = graph(
        step("smelt", {"ore": "10"}, ["ingot"], actor="smelter-lapsed"),
        lots=[lot("ore", who="mine-late")],
        certs={
            "smelter-lapsed": [cert("rmap", "conformant", date(2025, 1, 1), until=date(2026, 5, 31))],
            "mine-late": [cert("irma", "irma_75", since=date(2026, 4, 1))],  # assessed after the ore was mined
        },
    )
    r = responsible_share(g, "ingot", 10)
    assert list(by(r.smelters)) == ["rmap:not_conformant"]
    ev = by(r.smelters)["rmap:not_conformant"].evidence[0]
    assert (ev.value, ev.on, ev.participant_id) == ("none", "2026-06-01", "smelter-lapsed")
    assert by(r.smelters)["rmap:not_conformant"].claim() == "none"
    assert list(by(r.origins)) == ["none:lsm"]


def test_the_worst_smelting_on_the_way_counts_once() -> None:
    g = graph(
        step("smelt", {"ore": "10"}, ["crude"], actor="smelter-ok"),
        step(
            "refine",
            {"crude": "10", "ore-2": "10"},
            ["refined"],
            actor="refiner-bad",
            actor_kind="refiner",
            kind="refining",
            at=MADE,
        ),
        lots=[lot("ore"), lot("ore-2")],
        certs={"smelter-ok": [cert("rmap", "conformant")], "refiner-bad": [cert("rmap", "non_conformant")]},
    )
    r = responsible_share(g, "refined", 20)
    s = by(r.smelters)
    assert list(s) == ["rmap:not_conformant"]
    assert s["rmap:not_conformant"].kg == pytest.approx(20)
    assert {e.transformation_id: e.kg for e in s["rmap:not_conformant"].evidence} == {"refine": 20}
    assert fractions(r)[1] == pytest.approx(1)


def test_an_origin_the_reader_may_not_see_is_withheld() -> None:
    g = graph(
        step("smelt", {"ore": "10"}, ["ingot"]),
        lots=[lot("ore", who="mine-secret")],
        certs={"mine-secret": [cert("irma", "irma_50")]},
    )
    r = responsible_share(g, "ingot", 10, shown=lambda p: p != "mine-secret")
    ev = by(r.origins)["irma:irma_50"].evidence[0]
    assert ev.participant_id is None and ev.withheld == ("participant_id",)
    assert by(r.smelters)["rmap:not_conformant"].evidence[0].participant_id == "smelter-1"


def test_transparency_and_committed_are_their_own_shares_and_irma_counts_before_asm() -> None:
    g = graph(
        step("smelt", {"ore-t": "1", "ore-c": "1"}, ["ingot"]),
        lots=[lot("ore-t", who="mine-t"), lot("ore-c", who="mine-c", mining="asm")],
        certs={
            "mine-t": [cert("irma", "transparency")],
            "mine-c": [cert("craft", "committed"), cert("itsci", "member")],
        },
    )
    assert set(by(responsible_share(g, "ingot", 2).origins)) == {"irma:transparency", "asm:craft:committed"}


def test_the_openapi_example_is_a_valid_answer() -> None:
    (example,) = ResponsibleShareOut.model_json_schema()["examples"]
    assert ResponsibleShareOut.model_validate(example).origins[0].claim == "mass_balance"
