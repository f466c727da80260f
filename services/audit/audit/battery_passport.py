"""The supply-chain due-diligence section of a battery passport for a battery or component lot (EU Battery Regulation
2023/1542, Art. 48-52 and Annex XIII; the attribute names follow the Battery Pass consortium's data model, aspect
`SupplyChainDueDiligence`: `supplyChainDueDiligenceReport`, `thirdPartyAssurances`). Pure: no I/O.

For each raw material the regulation's due diligence names (`shared.vocab.BATTERY_MATERIALS`: cobalt, lithium,
nickel, natural graphite) found upstream of the lot: where it came from (countries, regions, mining type, the share of
the lot's mass attributed to each origin through the genealogy, `audit.filings_domain.attribute`; a mine's identity
only as disclosure allows), the smelters and refiners it passed (name, RMI facility id, country, RMAP status on the
day, share), the risks audit found on its lots (the flags the asker may see) and how they were handled (the
decisions on them the asker may see), the third-party assurances on record (certifications in force on the day).
Then the asker's own due-diligence policy as its latest self-assessment states it (part S's `self_assessments`).

Shares are of the lot's mass attributed by mass drawn at each transformation, not elemental content: a cathode that
drew 30 kg of cobalt sulphate and 70 kg of other inputs attributes 30 % of its mass to the cobalt's origins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from audit.filings_domain import Attribution, Graph, Step, attribute, share
from audit.rules import Cert, held
from shared.vocab import BATTERY_MATERIALS

MATERIAL_LABELS = {"cobalt": "Cobalt", "lithium": "Lithium", "nickel": "Nickel", "graphite": "Natural graphite"}
SCHEMES = ("irma", "rmap", "fairmined", "craft", "itsci")  # the assurance schemes we may hold for a participant
UNVERIFIED = [
    "Field names follow the Battery Pass data model (SupplyChainDueDiligence aspect, v1.0.0: "
    "supplyChainDueDiligenceReport, thirdPartyAssurances) in snake case; its finer structure is our own, not "
    "checked against DIN DKE SPEC 99100 or the Commission's delegated acts.",
    "Shares are of the lot's mass attributed by mass drawn at each transformation, not elemental content.",
    "Natural graphite: our mineral `graphite` does not tell natural from synthetic.",
    "The due-diligence policy is the asker's latest self-assessment, not a published policy document; no notified "
    "body's verification (Art. 48(3)) is on record here.",
]


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """A decision on a flag as the asker may see it (audit.service's flag detail rules)."""

    kind: str  # acknowledge | respond | resolve | reopen
    decided_at: datetime
    decided_by: str | None
    decided_by_kind: str
    note: str | None


@dataclass(frozen=True, slots=True)
class Risk:
    """A flag on a lot upstream, as the asker may see it, with its decisions."""

    flag_id: str
    rule: str
    severity: str
    status: str
    summary: str
    raised_at: datetime
    lot_ids: tuple[str, ...]
    decisions: tuple[RiskDecision, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """The asker's latest self-assessment (`self_assessments`)."""

    assessment_id: str
    submitted_at: datetime
    questionnaire_version: str
    total: Decimal | float


# --- the answer (its JSON schema is the API's: docs/battery-passport.md) ------------------------------------------


class OriginOut(BaseModel):
    origin_kind: str = Field(description="mine | recycled | declared")
    country: str | None = Field(description="ISO 3166-1 alpha-2 where it was mined or collected")
    region: str | None
    mining_type: str | None = Field(description="asm (artisanal, small-scale) | lsm (industrial); mines only")
    recycled_source: str | None = Field(description="recycled | scrap; recycled origins only")
    participant_id: str | None = Field(description="The mine or recycler, as disclosure allows (else null)")
    name: str | None = Field(description="Its name, as disclosure allows (else null)")
    lot_ids: list[str]
    mass_kg: float = Field(description="Mass of the lot attributed to this origin")
    share: float = Field(description="mass_kg / the lot's mass")
    withheld: list[str] = Field(default_factory=list)


class FacilityOut(BaseModel):
    participant_id: str | None = Field(description="Smelters and refiners are public; null if withheld")
    name: str | None
    kind: str = Field(description="smelter | refiner, or the kind of whoever smelted or refined")
    rmi_facility_id: str | None = Field(description="The RMI facility id (RMAP), where known")
    country: str | None
    transformation_id: str
    processed_at: datetime
    rmap_status_then: str = Field(description="conformant | active | non_conformant | suspended | none, on the day")
    mass_kg: float = Field(description="Mass of the lot attributed through this smelting or refining")
    share: float
    withheld: list[str] = Field(default_factory=list)


class DecisionOut(BaseModel):
    kind: str = Field(description="acknowledge | respond | resolve | reopen")
    decided_at: datetime
    decided_by: str | None = Field(description="A participant as disclosure allows, or a compliance officer")
    decided_by_kind: str
    note: str | None


class RiskOut(BaseModel):
    flag_id: str
    rule: str
    severity: str
    status: Literal["open", "resolved", "withdrawn"] | str
    summary: str
    raised_at: datetime
    lot_ids: list[str]
    handled: bool = Field(description="Resolved or withdrawn, or someone decided on it")
    decisions: list[DecisionOut] = Field(description="How it was handled, oldest first, as the asker may see them")


class AssuranceOut(BaseModel):
    participant_id: str | None = Field(description="Whose certification, as disclosure allows")
    role: Literal["origin", "smelter_or_refiner"]
    scheme: str = Field(description="irma | rmap | fairmined | craft | itsci")
    value: str
    valid_from: date
    valid_until: date | None
    on: date = Field(description="The day it was in force for this material: mined, or smelted/refined")


class RawMaterialOut(BaseModel):
    raw_material: str = Field(description="cobalt | lithium | nickel | graphite (a UNTP passport: any mineral)")
    label: str
    share: float = Field(description="Share of the lot's mass attributed to this material's origins")
    origins: list[OriginOut]
    smelters_and_refiners: list[FacilityOut]
    risks: list[RiskOut] = Field(description="Flags on this material's lots upstream, as the asker may see them")
    third_party_assurances: list[AssuranceOut]


class PolicyOut(BaseModel):
    assessment_id: str
    submitted_at: datetime
    questionnaire_version: str
    total: float = Field(description="0..100, the OECD five-step self-assessment score")


class DueDiligenceReportOut(BaseModel):
    due_diligence_policy: PolicyOut | None = Field(description="The asker's latest self-assessment, if any")
    raw_materials: list[RawMaterialOut]
    other_risks: list[RiskOut] = Field(description="Flags upstream on lots of no battery raw material")


class BatteryDueDiligenceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "cellco:battery-7",
                    "mineral": "cobalt",
                    "mass_kg": 450.0,
                    "supply_chain_due_diligence_report": {
                        "due_diligence_policy": {
                            "assessment_id": "5f0c...",
                            "submitted_at": "2026-11-02T09:00:00Z",
                            "questionnaire_version": "2026.1",
                            "total": 78.0,
                        },
                        "raw_materials": [
                            {
                                "raw_material": "cobalt",
                                "label": "Cobalt",
                                "share": 0.3,
                                "origins": [
                                    {
                                        "origin_kind": "mine",
                                        "country": "CD",
                                        "region": "Lualaba",
                                        "mining_type": "lsm",
                                        "recycled_source": None,
                                        "participant_id": None,
                                        "name": None,
                                        "lot_ids": ["kolwezi:ore-12"],
                                        "mass_kg": 135.0,
                                        "share": 0.3,
                                        "withheld": ["participant_id", "name"],
                                    }
                                ],
                                "smelters_and_refiners": [
                                    {
                                        "participant_id": "refiner-fi",
                                        "name": "Kokkola Cobalt Refinery",
                                        "kind": "refiner",
                                        "rmi_facility_id": "CID003000",
                                        "country": "FI",
                                        "transformation_id": "t-refine-1",
                                        "processed_at": "2026-07-01T00:00:00Z",
                                        "rmap_status_then": "conformant",
                                        "mass_kg": 135.0,
                                        "share": 0.3,
                                        "withheld": [],
                                    }
                                ],
                                "risks": [],
                                "third_party_assurances": [],
                            }
                        ],
                        "other_risks": [],
                    },
                    "third_party_assurances": [],
                    "truncated": False,
                    "unverified": ["Shares are of the lot's mass attributed by mass drawn, not elemental content."],
                }
            ]
        }
    )

    lot_id: str
    mineral: str
    mass_kg: float
    supply_chain_due_diligence_report: DueDiligenceReportOut = Field(
        description="Battery Pass `supplyChainDueDiligenceReport`: the content, per raw material"
    )
    third_party_assurances: list[AssuranceOut] = Field(
        description="Battery Pass `thirdPartyAssurances`: every certification on record in the chain, on the day"
    )
    truncated: bool = Field(description="The genealogy walk stopped at its bound: origins beyond it are missing")
    unverified: list[str] = Field(description="What this section does not claim")


# --- building it ----------------------------------------------------------------------------------------------------


def _risk(r: Risk) -> RiskOut:
    return RiskOut(
        flag_id=r.flag_id,
        rule=r.rule,
        severity=r.severity,
        status=r.status,
        summary=r.summary,
        raised_at=r.raised_at,
        lot_ids=list(r.lot_ids),
        handled=r.status != "open" or bool(r.decisions),
        decisions=[
            DecisionOut(
                kind=d.kind,
                decided_at=d.decided_at,
                decided_by=d.decided_by,
                decided_by_kind=d.decided_by_kind,
                note=d.note,
            )
            for d in sorted(r.decisions, key=lambda d: d.decided_at)
        ],
    )


def _assurances(
    graph: Graph, who: str, role: Literal["origin", "smelter_or_refiner"], on: date, shown: Callable[[str], bool]
) -> list[AssuranceOut]:
    certs: Sequence[Cert] = graph.certs.get(who, [])
    out = []
    for scheme in SCHEMES:
        c = held(certs, scheme, on)
        if c is not None:
            out.append(
                AssuranceOut(
                    participant_id=who if shown(who) else None,
                    role=role,
                    scheme=c.scheme,
                    value=c.value,
                    valid_from=c.valid_from,
                    valid_until=c.valid_until,
                    on=on,
                )
            )
    return out


def _material(
    material: str,
    graph: Graph,
    a: Attribution,
    whole: float,
    risks: Sequence[Risk],
    shown: Callable[[str], bool],
) -> RawMaterialOut:
    lots = {lot for lot in a.lots if (f := graph.lots.get(lot)) is not None and f.mineral == material}
    origins: dict[tuple[object, ...], OriginOut] = {}
    assurances: list[AssuranceOut] = []
    for lot, flow in sorted(a.origins(graph.made_by).items()):
        facts = graph.lots.get(lot)
        if facts is None or facts.mineral != material or facts.origin_kind == "transformation":
            continue
        who = facts.origin_participant
        visible = who is None or shown(who)
        party = graph.parties.get(who) if who else None
        key = (
            facts.origin_kind,
            facts.origin_country,
            facts.origin_region,
            facts.origin_mining_type,
            facts.origin_source,
            who if visible else None,
        )
        o = origins.get(key)
        if o is None:
            o = origins[key] = OriginOut(
                origin_kind=facts.origin_kind,
                country=facts.origin_country,
                region=facts.origin_region,
                mining_type=facts.origin_mining_type,
                recycled_source=facts.origin_source,
                participant_id=who if visible else None,
                name=(party.name if party else None) if visible else None,
                lot_ids=[],
                mass_kg=0.0,
                share=0.0,
                withheld=[] if visible else ["participant_id", "name"],
            )
        o.lot_ids.append(lot)
        o.mass_kg += flow.kg
        if who is not None:
            assurances += _assurances(graph, who, "origin", facts.origin_at.date(), shown)
    for o in origins.values():
        o.share = share(o.mass_kg, whole)
        o.mass_kg = round(o.mass_kg, 6)
    facilities = []
    for step in _steps(graph.made_by.values()):
        passed = a.steps.get(step.transformation_id)
        if passed is None or graph.smelting(step) is None:
            continue
        if not any((f := graph.lots.get(o)) is not None and f.mineral == material for o in step.outputs):
            continue
        on = step.occurred_at.date()
        cert = held(graph.certs.get(step.actor, []), "rmap", on)
        visible = shown(step.actor)
        party = graph.parties.get(step.actor)
        facilities.append(
            FacilityOut(
                participant_id=step.actor if visible else None,
                name=party.name if party and visible else None,
                kind=step.actor_kind,
                rmi_facility_id=party.rmi_smelter_id if party and visible else None,
                country=party.country if party else None,
                transformation_id=step.transformation_id,
                processed_at=step.occurred_at,
                rmap_status_then=cert.value if cert is not None else "none",
                mass_kg=round(passed.kg, 6),
                share=share(passed.kg, whole),
                withheld=[] if visible else ["participant_id", "name", "rmi_facility_id"],
            )
        )
        assurances += _assurances(graph, step.actor, "smelter_or_refiner", on, shown)
    origin_kg = sum(o.mass_kg for o in origins.values())
    return RawMaterialOut(
        raw_material=material,
        label=MATERIAL_LABELS.get(material, material.capitalize()),
        share=share(origin_kg, whole),
        origins=sorted(origins.values(), key=lambda o: (-o.mass_kg, o.lot_ids)),
        smelters_and_refiners=facilities,
        risks=[_risk(r) for r in risks if lots.intersection(r.lot_ids)],
        third_party_assurances=assurances,
    )


def _steps(steps: Iterable[Step]) -> list[Step]:
    """Each transformation once (one per output lot in `made_by`), by when it happened."""
    return sorted({s.transformation_id: s for s in steps}.values(), key=lambda s: (s.occurred_at, s.transformation_id))


def due_diligence(
    graph: Graph,
    lot_id: str,
    mineral: str,
    mass_kg: Decimal | float,
    *,
    risks: Sequence[Risk] = (),
    policy: Policy | None = None,
    shown: Callable[[str], bool] = lambda _: True,
    materials: frozenset[str] = BATTERY_MATERIALS,
) -> BatteryDueDiligenceOut:
    """The due-diligence section for `lot_id` (`mass_kg` of `mineral`) through `graph`, its upstream genealogy.
    `risks`: the flags on lots upstream the asker may see, each with the decisions it may see; `policy`: its latest
    self-assessment; `shown(participant)`: may it learn that participant's identity (smelters are public);
    `materials`: the raw materials reported, the regulation's by default (a UNTP passport reports every mineral)."""
    whole = float(mass_kg)
    a = attribute(graph.made_by, {lot_id: mass_kg})
    present = sorted({f.mineral for lot in a.lots if (f := graph.lots.get(lot)) is not None} & materials)
    reported = [_material(m, graph, a, whole, risks, shown) for m in present]
    material_lots = {lot for lot in a.lots if (f := graph.lots.get(lot)) is not None and f.mineral in materials}
    other = [_risk(r) for r in risks if not material_lots.intersection(r.lot_ids)]
    every: dict[tuple[object, ...], AssuranceOut] = {}
    for m in reported:
        for x in m.third_party_assurances:
            every.setdefault((x.participant_id, x.role, x.scheme, x.value, x.valid_from, x.on), x)
    return BatteryDueDiligenceOut(
        lot_id=lot_id,
        mineral=mineral,
        mass_kg=whole,
        supply_chain_due_diligence_report=DueDiligenceReportOut(
            due_diligence_policy=PolicyOut(
                assessment_id=policy.assessment_id,
                submitted_at=policy.submitted_at,
                questionnaire_version=policy.questionnaire_version,
                total=float(policy.total),
            )
            if policy is not None
            else None,
            raw_materials=reported,
            other_risks=other,
        ),
        third_party_assurances=list(every.values()),
        truncated=graph.truncated,
        unverified=UNVERIFIED,
    )
