"""The battery passport's supply-chain due-diligence section (audit.battery_passport), on graphs built here. Pure."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from audit.battery_passport import BatteryDueDiligenceOut, Policy, Risk, RiskDecision, due_diligence
from audit.filings_domain import Graph, LotFacts, PartyFacts, Step
from audit.rules import Cert

MINED = datetime(2026, 3, 1, tzinfo=UTC)
REFINED = datetime(2026, 6, 1, tzinfo=UTC)
MADE = datetime(2026, 9, 1, tzinfo=UTC)


def step(tid: str, inputs: dict[str, str], outputs: list[str], actor: str, actor_kind: str, kind: str) -> Step:
    at = REFINED if kind == "refining" else MADE
    return Step(
        tid,
        kind,
        actor,
        actor_kind,
        at,
        "mass_balance",
        tuple((k, Decimal(v)) for k, v in inputs.items()),
        tuple(outputs),
    )


def lot(
    lot_id: str, mineral: str, *, kind: str = "mine", who: str | None = None, form: str = "ore", **kw: str
) -> LotFacts:
    return LotFacts(
        lot_id=lot_id,
        mineral=mineral,
        form=form,
        mass_kg=Decimal("1000"),
        origin_kind=kind,
        origin_participant=who,
        origin_country=kw.get("country"),
        origin_region=kw.get("region"),
        origin_mining_type=kw.get("mining"),
        origin_source=kw.get("source"),
        origin_at=MINED,
    )


def party(pid: str, kind: str, name: str, country: str, rmi: str | None = None) -> PartyFacts:
    return PartyFacts(pid, kind, name, country, None, rmi, None)


def battery_chain() -> Graph:
    g = Graph()
    steps = [
        step("refine-co", {"co-ore": "1000"}, ["co-sulphate"], "refiner-fi", "refiner", "refining"),
        step(
            "cathode",
            {"co-sulphate": "30", "li-recycled": "20", "ni-sulphate": "50"},
            ["cathode-1"],
            "cam",
            "component_manufacturer",
            "processing",
        ),
        step("assemble", {"cathode-1": "80", "cu-foil": "20"}, ["battery-1"], "cellco", "manufacturer", "assembly"),
    ]
    for s in steps:
        for o in s.outputs:
            g.made_by[o] = s
    g.lots.update(
        {
            "co-ore": lot("co-ore", "cobalt", who="mine-co", country="CD", region="Lualaba", mining="lsm"),
            "co-sulphate": lot("co-sulphate", "cobalt", kind="transformation", form="metal"),
            "li-recycled": lot(
                "li-recycled",
                "lithium",
                kind="recycled",
                who="recycler-1",
                country="DE",
                source="recycled",
                form="metal",
            ),
            "ni-sulphate": lot("ni-sulphate", "nickel", kind="declared", who="trader-ni", country="ID", form="metal"),
            "cathode-1": lot("cathode-1", "cobalt", kind="transformation", form="component"),
            "cu-foil": lot("cu-foil", "copper", kind="declared", who="foil-maker", country="JP", form="metal"),
            "battery-1": lot("battery-1", "cobalt", kind="transformation", form="component"),
        }
    )
    g.parties.update(
        {
            "mine-co": party("mine-co", "mine", "Kolwezi Mine", "CD"),
            "refiner-fi": party("refiner-fi", "refiner", "Kokkola Refinery", "FI", rmi="CID003000"),
            "recycler-1": party("recycler-1", "recycler", "Recycler GmbH", "DE"),
        }
    )
    g.certs.update(
        {
            "mine-co": [Cert("irma", "irma_50", date(2026, 1, 1), None, 1)],
            "refiner-fi": [
                Cert("rmap", "conformant", date(2025, 1, 1), date(2026, 5, 1), 1),
                Cert("rmap", "active", date(2026, 5, 2), None, 2),
            ],
        }
    )
    return g


FLAG_AT = datetime(2026, 3, 5, tzinfo=UTC)
RISKS = [
    Risk(
        "flag-1",
        "origin_in_cahra",
        "high",
        "resolved",
        "Origin mine in CAHRA",
        FLAG_AT,
        ("co-ore",),
        (
            RiskDecision("resolve", datetime(2026, 4, 2, tzinfo=UTC), "officer-1", "officer", "site visit"),
            RiskDecision("acknowledge", datetime(2026, 4, 1, tzinfo=UTC), "cellco", "manufacturer", None),
        ),
    ),
    Risk("flag-2", "mass_mismatch", "medium", "open", "Received 19 kg of 20", FLAG_AT, ("cu-foil",)),
]


def test_each_battery_material_upstream_with_its_origins_refiners_risks_and_assurances() -> None:
    policy = Policy("sa-1", datetime(2026, 11, 1, tzinfo=UTC), "2026.1", Decimal("78.5"))
    out = due_diligence(
        battery_chain(),
        "battery-1",
        "cobalt",
        Decimal("100"),
        risks=RISKS,
        policy=policy,
        shown=lambda p: p != "mine-co",
    )
    report = out.supply_chain_due_diligence_report
    mats = {m.raw_material: m for m in report.raw_materials}
    assert list(mats) == ["cobalt", "lithium", "nickel"]  # no graphite upstream; copper is no battery material
    co = mats["cobalt"]
    assert co.share == pytest.approx(0.24)  # 80 % cathode x 30 % cobalt sulphate
    [origin] = co.origins
    assert (origin.country, origin.region, origin.mining_type, origin.origin_kind) == ("CD", "Lualaba", "lsm", "mine")
    assert origin.participant_id is None and origin.name is None  # the mine's identity is withheld from this asker
    assert origin.withheld == ["participant_id", "name"] and origin.lot_ids == ["co-ore"]
    [refiner] = co.smelters_and_refiners
    assert (refiner.name, refiner.rmi_facility_id, refiner.country) == ("Kokkola Refinery", "CID003000", "FI")
    assert refiner.rmap_status_then == "active"  # the conformant status had lapsed by the refining
    assert refiner.share == pytest.approx(0.24)
    [risk] = co.risks
    assert (risk.flag_id, risk.status, risk.handled) == ("flag-1", "resolved", True)
    assert [(d.kind, d.decided_by) for d in risk.decisions] == [("acknowledge", "cellco"), ("resolve", "officer-1")]
    assert {(a.scheme, a.value, a.participant_id) for a in co.third_party_assurances} == {
        ("irma", "irma_50", None),
        ("rmap", "active", "refiner-fi"),
    }
    li = mats["lithium"]
    assert li.origins[0].recycled_source == "recycled" and li.origins[0].name == "Recycler GmbH"
    assert li.share == pytest.approx(0.16) and li.smelters_and_refiners == [] and li.risks == []
    assert mats["nickel"].origins[0].origin_kind == "declared" and mats["nickel"].share == pytest.approx(0.4)
    assert [r.flag_id for r in report.other_risks] == ["flag-2"]
    assert report.other_risks[0].handled is False
    assert report.due_diligence_policy is not None and report.due_diligence_policy.total == 78.5
    assert len(out.third_party_assurances) == 2
    assert out.unverified and not out.truncated


def test_no_policy_no_risks_and_the_answer_is_its_documented_schema() -> None:
    g = battery_chain()
    g.truncated = True
    out = due_diligence(g, "cathode-1", "cobalt", 10)
    assert out.supply_chain_due_diligence_report.due_diligence_policy is None
    assert out.truncated
    again = BatteryDueDiligenceOut.model_validate(json.loads(out.model_dump_json()))
    assert again == out
    schema = BatteryDueDiligenceOut.model_json_schema()
    assert "supply_chain_due_diligence_report" in schema["required"]
    assert "third_party_assurances" in schema["properties"]


def test_every_field_of_the_schema_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "battery-passport.md").read_text()
    schema = BatteryDueDiligenceOut.model_json_schema()
    names = set(schema["properties"])
    for definition in schema["$defs"].values():
        names.update(definition["properties"])
    missing = sorted(n for n in names if f"`{n}`" not in doc and f".{n}`" not in doc and f"{n}[]" not in doc)
    assert missing == []


def test_the_openapi_example_is_a_valid_answer() -> None:
    (example,) = BatteryDueDiligenceOut.model_json_schema()["examples"]
    assert BatteryDueDiligenceOut.model_validate(example).supply_chain_due_diligence_report.raw_materials


def test_materials_named_report_every_mineral_the_passport_asks_for() -> None:
    """The battery passport reports the regulation's raw materials; a UNTP passport (audit.untp_router) asks for
    every mineral, so the copper foil's origin is reported too, and its flag is then a risk of that material."""
    battery = due_diligence(battery_chain(), "battery-1", "cobalt", 100, risks=RISKS)
    assert "copper" not in {m.raw_material for m in battery.supply_chain_due_diligence_report.raw_materials}
    assert [r.flag_id for r in battery.supply_chain_due_diligence_report.other_risks] == ["flag-2"]
    every = due_diligence(
        battery_chain(), "battery-1", "cobalt", 100, risks=RISKS, materials=frozenset({"cobalt", "copper", "nickel"})
    )
    by = {m.raw_material: m for m in every.supply_chain_due_diligence_report.raw_materials}
    assert set(by) == {"cobalt", "copper", "nickel"}
    assert by["copper"].label == "Copper"
    assert [(o.country, o.share) for o in by["copper"].origins] == [("JP", pytest.approx(0.2))]
    assert every.supply_chain_due_diligence_report.other_risks == []
