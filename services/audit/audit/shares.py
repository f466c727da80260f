"""What share of a lot (a product lot, or any lot) is responsibly produced, by mass through its genealogy
(`audit.filings_domain.attribute`). Pure: no I/O.

Two breakdowns of the lot's mass, each adding up to 1:

- by origin: IRMA-assessed industrial mines by level (`irma_50`, `irma_75`, `irma_100`, `transparency`) on the day
  the lot was mined; Fairmined and CRAFT artisanal producers as `audit.rules` grades them on that day (certified,
  progressing, conformant, committed); recycled sources (`recycled`, `scrap`); other known origins (`none`: no such
  assessment); mass that passed a book-and-claim transformation (`book_and_claim`: no claim at all, the physical link
  is gone); and `unknown` (an origin whose facts are missing, or where a truncated graph stops);
- by smelter: the mass whose smeltings (`Graph.smelting`) were all by RMAP Conformant smelters on the day of each
  smelting (`conformant`), whose worst was RMAP Active (`active`), whose smeltings included one neither
  (`not_conformant`), that passed no smelting on record (`no_smelting`), `book_and_claim` and `unknown` as above.

Each share states its mass on the whole flow (`kg`, `fraction`) and on the physical flow (`physical_kg`: every
transformation between kept a physical link, identity preserved or segregated) and the claim it supports: `physical`
when the whole share kept that link, else `mass_balance`; a Fairmined share supports a claim only on its physical
flow (Fairmined requires physical segregation); `none`, `unknown`, `book_and_claim` and every smelter share but
`conformant` (RMAP Active is reported, not claimed) support none. The
transformations passed are listed with what each passes on (`physical`, `mass_balance`, `none`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from audit.filings_domain import Attribution, Flow, Graph, LotFacts, Step, attribute, share
from audit.rules import CERTIFIED_ASM, COMMITTED_ASM, Cert, asm_certification, held, irma_level
from shared.vocab import CustodyModel, claims_physical

Claim = Literal["physical", "mass_balance", "none"]
CLAIMING_ASM = ("fairmined", "craft")  # the artisanal schemes this share counts (ITSCI is a traceability scheme)
PHYSICAL_ONLY = frozenset({"fairmined"})  # schemes whose claim needs the material itself
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a share rests on: an origin lot (with its participant where the reader may see it, and the certification
    that counted on the day), or a smelting (its smelter, public, and its RMAP status on the day)."""

    lot_id: str | None = None
    transformation_id: str | None = None
    participant_id: str | None = None
    scheme: str | None = None
    value: str | None = None
    valid_from: str | None = None
    on: str | None = None
    kg: float = 0.0
    withheld: tuple[str, ...] = ()


@dataclass(slots=True)
class Share:
    """One category of a breakdown: its mass on the whole and the physical flow, and the claim that mass supports."""

    category: str  # irma | asm | recycled | none | book_and_claim | unknown (origins); rmap | ... (smelters)
    value: str  # the level, grade or source (irma_75, fairmined:certified, scrap, conformant...)
    kg: float = 0.0
    physical_kg: float = 0.0
    evidence: list[Evidence] = field(default_factory=list)

    def claim(self) -> Claim:
        if self.category in {"none", "unknown", "book_and_claim"}:
            return "none"
        if self.category == "rmap" and self.value != "conformant":
            return "none"  # RMAP Active is on its way to conformance: reported, not claimed
        if self.category == "asm" and self.value.partition(":")[0] in PHYSICAL_ONLY:
            return "physical"  # whatever kept no physical link supports no claim
        return "physical" if self.physical_kg >= self.kg - EPSILON else "mass_balance"

    def claimable_kg(self) -> float:
        c = self.claim()
        return 0.0 if c == "none" else self.physical_kg if c == "physical" else self.kg


@dataclass(frozen=True, slots=True)
class StepPassed:
    """A transformation the lot's mass passed, with the chain-of-custody model it followed and what that passes on."""

    transformation_id: str
    kind: str
    custody_model: str | None
    passes: Claim
    kg: float


@dataclass(slots=True)
class ResponsibleShare:
    lot_id: str
    mass_kg: float
    origins: list[Share]
    smelters: list[Share]
    steps: list[StepPassed]
    truncated: bool


def passes(model: str | None) -> Claim:
    """What a transformation under `model` passes on: a physical claim, a mass-balance one, or (book and claim:
    certificates traded apart from the material) none."""
    if model == CustodyModel.book_and_claim:
        return "none"
    return "physical" if claims_physical(model) else "mass_balance"


def _without(made_by: Mapping[str, Step], cut: Callable[[Step], bool]) -> dict[str, Step]:
    """The graph with every lot made by a `cut` transformation made an origin (its mass stops there)."""
    return {lot: s for lot, s in made_by.items() if not cut(s)}


def _stopped(a: Attribution, whole: Mapping[str, Step], cut: Mapping[str, Step]) -> dict[str, Flow]:
    """The lots where `a` (attributed over `cut`) stopped because `whole` says a transformation made them."""
    return {lot: f for lot, f in a.lots.items() if lot not in cut and lot in whole}


def _add(shares: dict[tuple[str, str], Share], category: str, value: str, f: Flow, ev: Evidence | None) -> None:
    s = shares.setdefault((category, value), Share(category, value))
    s.kg += f.kg
    s.physical_kg += f.physical_kg
    if ev is not None:
        s.evidence.append(ev)


def _origin(lot: str, facts: LotFacts | None, graph: Graph, shown: Callable[[str], bool]) -> tuple[str, str, Evidence]:
    """The origin category of an origin lot, and its evidence."""
    if facts is None or facts.origin_kind == "transformation":
        return "unknown", "unknown", Evidence(lot_id=lot)  # made by a transformation outside the graph, or no facts
    who = facts.origin_participant
    on = facts.origin_at.date()

    def ev(cert: Cert | None = None, value: str | None = None) -> Evidence:
        visible = who is None or shown(who)
        return Evidence(
            lot_id=lot,
            participant_id=who if visible else None,
            scheme=cert.scheme if cert else None,
            value=cert.value if cert else value,
            valid_from=cert.valid_from.isoformat() if cert else None,
            on=on.isoformat(),
            withheld=() if visible else ("participant_id",),
        )

    if facts.origin_kind == "recycled":
        source = facts.origin_source or "unknown"
        return ("recycled", source, ev(value=source)) if source != "unknown" else ("unknown", "unknown", ev())
    if facts.origin_kind != "mine" or who is None:
        return "none", facts.origin_kind, ev()
    certs = graph.certs.get(who, [])
    if facts.origin_mining_type != "asm" and (level := irma_level(certs, on)) is not None:
        return "irma", level, ev(held(certs, "irma", on))
    cert = asm_certification([c for c in certs if c.scheme in CLAIMING_ASM], on)
    graded = cert is not None and (
        cert.value in CERTIFIED_ASM.get(cert.scheme, ()) or cert.value in COMMITTED_ASM.get(cert.scheme, ())
    )
    if cert is not None and graded:
        return "asm", f"{cert.scheme}:{cert.value}", ev(cert)
    return "none", facts.origin_mining_type or "mine", ev()


def _rmap(graph: Graph, step: Step) -> tuple[str, Cert | None]:
    cert = held(graph.certs.get(step.actor, []), "rmap", step.occurred_at.date())
    status = cert.value if cert is not None else "none"
    return ("conformant" if status == "conformant" else "active" if status == "active" else "not_conformant"), cert


def _is_book_and_claim(step: Step) -> bool:
    return step.custody_model == CustodyModel.book_and_claim


def _ordered(shares: dict[tuple[str, str], Share], order: Iterable[str]) -> list[Share]:
    rank = {c: i for i, c in enumerate(order)}
    return sorted(shares.values(), key=lambda s: (rank.get(s.category, len(rank)), -s.kg, s.value))


def responsible_share(
    graph: Graph, lot_id: str, mass_kg: Decimal | float, *, shown: Callable[[str], bool] = lambda _: True
) -> ResponsibleShare:
    """The responsibly-produced share of `lot_id` (`mass_kg` of it) through `graph` (its upstream genealogy).
    `shown(participant)`: may the reader learn that participant's identity (an origin's mine or recycler; smelters
    are public)? Not shown: its id is left out of the evidence and named in `withheld`."""
    whole = float(mass_kg)
    roots = {lot_id: mass_kg}
    claimable = _without(graph.made_by, _is_book_and_claim)
    full = attribute(claimable, roots)

    origins: dict[tuple[str, str], Share] = {}
    for lot, f in full.lots.items():
        if lot in claimable:
            continue
        if lot in graph.made_by:  # made by a book-and-claim transformation: the claim stops here
            ev = Evidence(lot_id=lot, transformation_id=graph.made_by[lot].transformation_id, kg=f.kg)
            _add(origins, "book_and_claim", CustodyModel.book_and_claim, f, ev)
            continue
        category, value, ev = _origin(lot, graph.lots.get(lot), graph, shown)
        _add(origins, category, value, f, replace(ev, kg=round(f.kg, 6)))

    smelters = _smelter_shares(graph, claimable, full, roots, shown)
    steps: list[StepPassed] = []
    for step in {s.transformation_id: s for s in graph.made_by.values()}.values():
        t = step.transformation_id
        if t in full.steps:
            kg = full.steps[t].kg
        elif _is_book_and_claim(step) and any(o in full.lots for o in step.outputs):
            kg = sum(full.lots[o].kg for o in step.outputs if o in full.lots)
        else:
            continue
        steps.append(StepPassed(t, step.kind, step.custody_model, passes(step.custody_model), round(kg, 6)))
    steps.sort(key=lambda p: p.transformation_id)
    return ResponsibleShare(
        lot_id=lot_id,
        mass_kg=whole,
        origins=_ordered(origins, ("irma", "asm", "recycled", "none", "book_and_claim", "unknown")),
        smelters=_ordered(smelters, ("rmap", "book_and_claim", "unknown")),
        steps=steps,
        truncated=graph.truncated,
    )


def _smelter_shares(
    graph: Graph,
    claimable: dict[str, Step],
    full: Attribution,
    roots: Mapping[str, Decimal | float],
    shown: Callable[[str], bool],
) -> dict[tuple[str, str], Share]:
    """The smelter breakdown: the worst RMAP status among the smeltings each kilogram passed. One attribution per
    cut of the graph: cut at the not-conformant smeltings, what stops there passed at least one; cut at those and
    the active ones, at least one of either; cut at every smelting, at least one smelting. The differences are the
    shares; what passed no smelting is told apart from book and claim and the unknown by where it stopped."""
    status: dict[str, tuple[str, Cert | None]] = {}
    smeltings: dict[str, Step] = {}
    for s in claimable.values():
        if s.transformation_id not in status and graph.smelting(s) is not None:
            status[s.transformation_id] = _rmap(graph, s)
            smeltings[s.transformation_id] = s
    out: dict[tuple[str, str], Share] = {}
    below = Flow()  # what stopped at a worse status (counted there)
    worse: set[str] = set()
    last: Attribution = full
    cut: dict[str, Step] = claimable
    for grade in ("not_conformant", "active", "conformant"):
        worse.add(grade)
        cut = _without(claimable, lambda s: s.transformation_id in status and status[s.transformation_id][0] in worse)
        last = attribute(cut, roots)
        stopped = _stopped(last, claimable, cut)
        here = Flow(sum(f.kg for f in stopped.values()), sum(f.physical_kg for f in stopped.values()))
        share_ = out.setdefault(("rmap", grade), Share("rmap", grade))
        share_.kg = max(here.kg - below.kg, 0.0)
        share_.physical_kg = max(here.physical_kg - below.physical_kg, 0.0)
        below = here
    for t, (grade, cert) in sorted(status.items()):
        flow = full.steps.get(t)
        if flow is None:
            continue
        step = smeltings[t]
        visible = shown(step.actor)
        out[("rmap", grade)].evidence.append(
            Evidence(
                transformation_id=t,
                participant_id=step.actor if visible else None,
                scheme="rmap",
                value=cert.value if cert is not None else "none",
                valid_from=cert.valid_from.isoformat() if cert is not None else None,
                on=step.occurred_at.date().isoformat(),
                kg=round(flow.kg, 6),
                withheld=() if visible else ("participant_id",),
            )
        )
    # the last cut stops at every smelting: its origins passed none
    for lot, f in last.origins(cut).items():
        if lot in claimable:  # made by a smelting: counted above
            continue
        if lot in graph.made_by:
            _add(out, "book_and_claim", CustodyModel.book_and_claim, f, Evidence(lot_id=lot, kg=round(f.kg, 6)))
            continue
        facts = graph.lots.get(lot)
        if facts is None or facts.origin_kind == "transformation":
            _add(out, "unknown", "unknown", f, Evidence(lot_id=lot, kg=round(f.kg, 6)))
        else:
            _add(out, "rmap", "no_smelting", f, None)
    # a smelting whose mass all passed a worse one too is evidence of no share
    return {k: v for k, v in out.items() if v.kg > EPSILON}


# --- the answer, as the API gives it ------------------------------------------------------------------------------


class ShareEvidence(BaseModel):
    lot_id: str | None = Field(None, description="An origin lot the share rests on (origin breakdown)")
    transformation_id: str | None = Field(None, description="A smelting, or a book-and-claim transformation")
    participant_id: str | None = Field(
        None, description="The origin's mine or recycler (as disclosure allows), or the smelter or refiner"
    )
    scheme: str | None = Field(None, description="The certification that counted: irma, fairmined, craft, rmap")
    value: str | None = Field(None, description="Its level or status then (or the recycled source)")
    valid_from: date | None = None
    on: date | None = Field(None, description="The day it was judged on: the lot mined, or the smelting")
    kg: float = Field(
        description="Mass of the lot attributed to this origin lot, or that passed this smelting (whole flow; some of "
        "it may count under a worse smelting on the same path)"
    )
    withheld: list[str] = Field(default_factory=list, description="Fields left out: disclosure")


class ShareOut(BaseModel):
    category: str = Field(description="irma | asm | recycled | none | book_and_claim | unknown; rmap (smelters)")
    value: str = Field(
        description="irma_50 | irma_75 | irma_100 | transparency; fairmined:certified, craft:<grade>; "
        "recycled | scrap; conformant | active | not_conformant | no_smelting (rmap)"
    )
    kg: float = Field(description="Mass attributed on the whole flow (mass balance)")
    fraction: float = Field(description="kg / the lot's mass")
    physical_kg: float = Field(
        description="The part of kg that kept a physical link (identity preserved or segregated)"
    )
    physical_fraction: float
    claim: Claim = Field(description="The claim this share supports: physical, mass_balance, or none")
    claimable_kg: float = Field(
        description="What may be claimed: physical_kg for a physical claim, kg for mass balance"
    )
    claimable_fraction: float
    evidence: list[ShareEvidence]


class StepOut(BaseModel):
    transformation_id: str
    kind: str
    custody_model: str | None = Field(description="ISO 22095 model on record (none: treated as mass balance)")
    passes: Claim = Field(description="physical (identity preserved, segregated), mass_balance, none (book and claim)")
    kg: float = Field(description="The lot's mass that passed this transformation")


class ResponsibleShareOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "acme:battery-1",
                    "mass_kg": 100.0,
                    "origins": [
                        {
                            "category": "irma",
                            "value": "irma_75",
                            "kg": 60.0,
                            "fraction": 0.6,
                            "physical_kg": 0.0,
                            "physical_fraction": 0.0,
                            "claim": "mass_balance",
                            "claimable_kg": 60.0,
                            "claimable_fraction": 0.6,
                            "evidence": [
                                {
                                    "lot_id": "mine1:ore-7",
                                    "participant_id": "mine1",
                                    "scheme": "irma",
                                    "value": "irma_75",
                                    "valid_from": "2026-01-01",
                                    "on": "2026-10-02",
                                    "kg": 60.0,
                                    "withheld": [],
                                }
                            ],
                        }
                    ],
                    "smelters": [],
                    "steps": [
                        {
                            "transformation_id": "t-1",
                            "kind": "assembly",
                            "custody_model": "mass_balance",
                            "passes": "mass_balance",
                            "kg": 100.0,
                        }
                    ],
                    "truncated": False,
                }
            ]
        }
    )

    lot_id: str
    mass_kg: float
    origins: list[ShareOut] = Field(description="By origin; the fractions add up to 1")
    smelters: list[ShareOut] = Field(description="By the worst RMAP status of the smeltings passed; add up to 1")
    steps: list[StepOut] = Field(description="The transformations passed, each with what its custody model passes on")
    truncated: bool = Field(description="The genealogy walk stopped at its bound: the unknown share includes the rest")


def as_out(r: ResponsibleShare) -> ResponsibleShareOut:
    """The answer as the API gives it: each share with its fractions of the lot's mass and the claim it supports."""

    def out(s: Share) -> ShareOut:
        claimable = s.claimable_kg()
        return ShareOut(
            category=s.category,
            value=s.value,
            kg=round(s.kg, 6),
            fraction=share(s.kg, r.mass_kg),
            physical_kg=round(s.physical_kg, 6),
            physical_fraction=share(s.physical_kg, r.mass_kg),
            claim=s.claim(),
            claimable_kg=round(claimable, 6),
            claimable_fraction=share(claimable, r.mass_kg),
            evidence=[
                ShareEvidence(
                    lot_id=e.lot_id,
                    transformation_id=e.transformation_id,
                    participant_id=e.participant_id,
                    scheme=e.scheme,
                    value=e.value,
                    valid_from=date.fromisoformat(e.valid_from) if e.valid_from else None,
                    on=date.fromisoformat(e.on) if e.on else None,
                    kg=e.kg,
                    withheld=list(e.withheld),
                )
                for e in s.evidence
            ],
        )

    return ResponsibleShareOut(
        lot_id=r.lot_id,
        mass_kg=r.mass_kg,
        origins=[out(s) for s in r.origins],
        smelters=[out(s) for s in r.smelters],
        steps=[StepOut(**{k: getattr(p, k) for k in StepPassed.__slots__}) for p in r.steps],
        truncated=r.truncated,
    )
