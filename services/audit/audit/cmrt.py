"""The Conflict Minerals Reporting Template's Smelter List and Declaration (and the Extended Minerals Reporting
Template's, over its minerals) from the genealogy of what a filer consumed. Pure: no I/O.

One row per (metal, smelter or refiner) upstream of the filer's roots (what it consumed, or received, in the period):
every transformation of the graph screened as a smelting (`Graph.smelting`: a smelter or refiner, a smelting or
refining, or ore/concentrate in and metal out, so a trader screened as a smelter is listed too, marked) that some of
the filer's mass of that metal passed (`filings_domain.attribute`). A row never appears with a 0 share. A smelter
without an RMI facility id is listed as the template's "Smelter not listed", its name in column D. Recycled and scrap
origins are not rows: they are what columns N and O say of the smelter they fed ("recycled", "scrap").

What only we know goes with each row: the RMAP status on each day metal passed the smelter for this filer, its share
of the filer's mass of that metal, the mines (where the filer may learn their names: `shared.visibility.party_shown`,
the filer being downstream) or countries its metal came from, and the flags upstream of it the filer may see (open
and resolved, by rule). The Declaration answers the data can give come with the lots, smelters and countries behind
them (`Answer.evidence`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import pycountry

from audit.filings_domain import Graph, LotFacts, Step, attribute, share
from audit.rules import held
from shared.visibility import Party, party_shown

# The template's Smelter List header row (row 4), columns A-Q, verbatim (H has a trailing space; P's apostrophe is
# U+2019): facts about the template's layout, recorded in docs/filings.md.
SMELTER_LIST_HEADERS: tuple[str, ...] = (
    "Smelter Identification Number Input Column",
    "Metal (*)",
    "Smelter Look-up (*)",
    "Smelter Name (1)",
    "Smelter Country (*)",
    "Smelter Identification",
    "Source of Smelter Identification Number",
    "Smelter Street ",
    "Smelter City",
    "Smelter Facility Location: State / Province",
    "Smelter Contact Name",
    "Smelter Contact Email",
    "Proposed next steps",
    'Name of Mine(s) or if recycled or scrap sourced, enter "recycled" or "scrap"',
    'Location (Country) of Mine(s) or if recycled or scrap sourced, enter "recycled" or "scrap"',
    "Does 100% of the smelter\u2019s feedstock originate from recycled or scrap sources?",
    "Comments",
)
HEADER_ROW = 4  # data from row 5
NOT_LISTED = "Smelter not listed"
RMI = "RMI"
# The Declaration's covered countries: the Democratic Republic of the Congo and the nine countries adjoining it.
COVERED_COUNTRIES = frozenset({"CD", "AO", "BI", "CF", "CG", "RW", "SS", "TZ", "UG", "ZM"})
CMRT_LETTERS = tuple("ABCDEFGHIJ")
EMRT_LETTERS = tuple("ABCDEFG")

YesNo = Literal["Yes", "No", "Unknown"]


def country_name(code: str | None) -> str | None:
    """A country's English short name (ISO 3166-1, as pycountry has it: the template's own spelling of some names
    differs, e.g. "Congo, Democratic Republic of the": docs/filings.md)."""
    if not code:
        return None
    c = pycountry.countries.get(alpha_2=code.upper())
    if c is None:
        return code
    return str(getattr(c, "common_name", None) or c.name)


@dataclass(frozen=True, slots=True)
class RootUse:
    """A root of the filing: a lot the filer consumed (or received), how much, into which product."""

    lot_id: str
    kg: Decimal
    product_id: str | None = None


@dataclass(frozen=True, slots=True)
class FlagSeen:
    """A flag the filer may see on a lot of the graph."""

    flag_id: str
    rule: str
    status: str  # open | resolved (withdrawn flags are left out)


@dataclass(slots=True)
class SmelterRow:
    """One smelter or refiner for one metal, with the template's columns and ours."""

    metal: str  # the template's Metal value (Tin, Gold...)
    mineral: str  # ours
    participant_id: str
    name: str
    rmi_id: str | None
    country: str | None  # ISO 3166-1 alpha-2
    region: str | None  # ISO 3166-2
    screened_as: str  # why it is listed (`shared.vocab.smelting_basis`): actor_kind | kind | forms
    kg: float  # the filer's mass of this metal that passed it
    share: float  # of the filer's mass of this metal (0..1, 6 places)
    mines: list[str] = field(default_factory=list)  # names the filer may learn
    mines_withheld: int = 0  # mines whose names it may not
    countries: list[str] = field(default_factory=list)  # ISO codes of the origins (mines and declared)
    recycled: list[str] = field(default_factory=list)  # "recycled" / "scrap" origins
    recycled_only: YesNo = "Unknown"
    rmap: list[tuple[date, str]] = field(default_factory=list)  # (day metal passed, RMAP status then or "none")
    transformations: list[str] = field(default_factory=list)
    origin_lots: list[str] = field(default_factory=list)
    sites: list[tuple[str | None, str | None]] = field(default_factory=list)  # (mine name shown, country): Mine List
    flags_open: int = 0
    flags_resolved: int = 0
    flags_by_rule: dict[str, dict[str, int]] = field(default_factory=dict)  # rule -> {open, resolved}

    @property
    def marked(self) -> bool:
        """Not registered as a smelter or refiner: listed because what it did was a smelting (issue 23)."""
        return self.screened_as != "actor_kind"

    def smelter_list(self) -> list[str | None]:
        """Columns A-Q of the template's Smelter List."""
        listed = self.rmi_id is not None
        origins_n = [*self.mines, *self.recycled]
        origins_o = [*(country_name(c) or c for c in self.countries), *self.recycled]
        comment = "Screened as a smelter: not registered as one (what it did was a smelting)" if self.marked else None
        return [
            self.rmi_id,  # A: the ID input column (option A)
            self.metal,  # B
            self.name if listed else NOT_LISTED,  # C: the look-up name (ours: the registry's; docs/filings.md)
            None if listed else self.name,  # D
            country_name(self.country),  # E
            self.rmi_id,  # F
            RMI if listed else None,  # G
            None,  # H street: not held
            None,  # I city: not held
            self.region,  # J
            None,  # K
            None,  # L
            None,  # M
            "; ".join(origins_n) or None,  # N
            "; ".join(dict.fromkeys(origins_o)) or None,  # O
            self.recycled_only,  # P
            comment,  # Q
        ]


@dataclass(slots=True)
class Answer:
    """A Declaration answer and the evidence behind it."""

    question: str
    metal: str | None  # per metal, or None: company level
    answer: str | None  # Yes | No | Unknown; None: unanswered
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Filing:
    template: str  # cmrt | emrt
    metals: dict[str, float]  # the filer's mass per metal (kg), as the template names it
    rows: list[SmelterRow]
    declaration: list[Answer]
    truncated: bool
    roots: int


@dataclass(slots=True)
class _Walk:
    lots: set[str]
    origins: set[str]
    cut: set[str]  # origins of the graph that were made by a transformation the walk did not follow


def _upstream(g: Graph, steps: Sequence[Step]) -> _Walk:
    """Every lot upstream of `steps` (their outputs and inputs, and on up), through inputs that carry mass."""
    seen: set[str] = set()
    origins: set[str] = set()
    cut: set[str] = set()
    stack: list[str] = []
    for s in steps:
        seen.update(s.outputs)
        stack.extend(lot for lot, kg in s.inputs if kg > 0)
    while stack:
        lot = stack.pop()
        if lot in seen:
            continue
        seen.add(lot)
        step = g.made_by.get(lot)
        if step is None:
            origins.add(lot)
            facts = g.lots.get(lot)
            if facts is None or facts.origin_kind == "transformation":
                cut.add(lot)
            continue
        stack.extend(i for i, kg in step.inputs if kg > 0 and i not in seen)
    return _Walk(seen, origins, cut)


def _recycled_only(facts: Sequence[LotFacts], cut: set[str]) -> YesNo:
    if any(f.origin_kind != "recycled" for f in facts):
        return "No"
    return "Unknown" if cut or not facts else "Yes"


def build(
    g: Graph,
    roots: Sequence[RootUse],
    *,
    template: str,
    minerals: Mapping[str, str],
    viewer: str | None,
    flags: Mapping[str, Sequence[FlagSeen]] | None = None,
    assessment: Mapping[str, Any] | None = None,
    covered: frozenset[str] = COVERED_COUNTRIES,
) -> Filing:
    """The filing over `minerals` (ours -> the template's label) for the roots: `viewer` the filer (None: the
    operator or a regulator, who learn every name); `flags`: by lot, those the reader may see; `assessment`: the
    filer's latest self-assessment (`assessment_id`, `submitted_at`, `cmrt_answers`), or None; `covered`: the countries
    the first Declaration question asks about (the CMRT's: the DRC and its nine neighbours; the EMRT asks about
    conflict-affected and high-risk areas: the countries with a CAHRA area in force)."""
    flags = flags or {}
    per_mineral: dict[str, dict[str, Decimal]] = {}
    for r in roots:
        facts = g.lots.get(r.lot_id)
        if facts is None or facts.mineral not in minerals or r.kg <= 0:
            continue
        by_lot = per_mineral.setdefault(facts.mineral, {})
        by_lot[r.lot_id] = by_lot.get(r.lot_id, Decimal(0)) + r.kg
    rows: list[SmelterRow] = []
    declaration: list[Answer] = []
    metals: dict[str, float] = {}
    steps_by_id = {s.transformation_id: s for s in g.made_by.values()}  # each transformation once, in graph order
    for mineral in sorted(per_mineral):
        metal = minerals[mineral]
        whole = per_mineral[mineral]
        total = float(sum(whole.values()))
        metals[metal] = total
        att = attribute(g.made_by, whole)
        by_smelter: dict[str, list[Step]] = {}
        basis: dict[str, str] = {}
        for t, step in steps_by_id.items():
            flow = att.steps.get(t)
            if flow is None or flow.kg <= 0:  # not this metal's (or none of the filer's mass passed it)
                continue
            why = g.smelting(step)
            if why is None:
                continue
            by_smelter.setdefault(step.actor, []).append(step)
            basis.setdefault(step.actor, why)
        mineral_rows: list[SmelterRow] = []
        for actor, steps in by_smelter.items():
            kg = min(sum(att.steps[s.transformation_id].kg for s in steps), total)  # in series: once
            if share(kg, total) <= 0:
                continue
            p = g.parties.get(actor)
            walk = _upstream(g, steps)
            row = SmelterRow(
                metal,
                mineral,
                actor,
                p.name if p else actor,
                p.rmi_smelter_id if p else None,
                p.country if p else None,
                p.region if p else None,
                basis[actor],
                round(kg, 3),
                share(kg, total),
            )
            _origins(g, row, walk, viewer, att.lots)
            certs = g.certs.get(actor, [])
            days = sorted({s.occurred_at.date() for s in steps})
            row.rmap = [(d, c.value if (c := held(certs, "rmap", d)) else "none") for d in days]
            row.transformations = sorted(s.transformation_id for s in steps)
            _flags(row, walk, flags)
            mineral_rows.append(row)
        mineral_rows.sort(key=lambda r: (-r.share, r.name, r.participant_id))
        rows.extend(mineral_rows)
        declaration.extend(_declare(g, metal, whole, att.lots, mineral_rows, covered))
    declaration.extend(_company(assessment, CMRT_LETTERS if template == "cmrt" else EMRT_LETTERS))
    return Filing(template, metals, rows, declaration, g.truncated, len(roots))


def _origins(g: Graph, row: SmelterRow, walk: _Walk, viewer: str | None, reached: Mapping[str, Any]) -> None:
    facts = [g.lots[o] for o in sorted(walk.origins) if o in g.lots and o in reached and o not in walk.cut]
    names: dict[str, None] = {}
    countries: dict[str, None] = {}
    recycled: dict[str, None] = {}
    withheld: set[str] = set()
    sites: dict[tuple[str | None, str | None], None] = {}
    for f in facts:
        if f.origin_kind == "recycled":
            recycled[f.origin_source or "recycled"] = None
            continue
        if f.origin_country:
            countries[f.origin_country] = None
        mine = f.origin_participant
        p = g.parties.get(mine) if mine is not None else None
        if mine is None or p is None:
            sites[(None, f.origin_country)] = None
            continue
        shown = viewer is None or party_shown(
            viewer, mine, Party(p.kind, p.disclosure, downstream=True), same_event=False
        )
        if shown:
            names[p.name] = None
        else:
            withheld.add(mine)
        sites[(p.name if shown else None, f.origin_country)] = None
    row.mines = sorted(names)
    row.mines_withheld = len(withheld)
    row.countries = sorted(countries)
    row.recycled = sorted(recycled)
    row.recycled_only = _recycled_only(facts, walk.cut)
    row.origin_lots = [f.lot_id for f in facts]
    row.sites = sorted(sites, key=lambda x: (x[0] or "", x[1] or ""))


def _flags(row: SmelterRow, walk: _Walk, flags: Mapping[str, Sequence[FlagSeen]]) -> None:
    seen: dict[str, FlagSeen] = {}
    for lot in walk.lots:
        for f in flags.get(lot, ()):
            seen[f.flag_id] = f
    for f in seen.values():
        counts = row.flags_by_rule.setdefault(f.rule, {"open": 0, "resolved": 0})
        if f.status == "resolved":
            counts["resolved"] += 1
            row.flags_resolved += 1
        else:
            counts["open"] += 1
            row.flags_open += 1
    row.flags_by_rule = dict(sorted(row.flags_by_rule.items()))


def _declare(
    g: Graph,
    metal: str,
    roots: Mapping[str, Decimal],
    reached: Mapping[str, Any],
    rows: Sequence[SmelterRow],
    covered_countries: frozenset[str],
) -> list[Answer]:
    """The metal's Declaration answers the data can give, with their evidence."""
    origins = [lot for lot in reached if lot not in g.made_by]
    facts = [g.lots[o] for o in sorted(origins) if o in g.lots]
    cut = sorted(f.lot_id for f in facts if f.origin_kind == "transformation") + sorted(
        o for o in origins if o not in g.lots
    )
    mined = [f for f in facts if f.origin_kind in ("mine", "declared")]
    covered = sorted({f.lot_id for f in mined if f.origin_country in covered_countries})
    unknown = sorted({f.lot_id for f in mined if not f.origin_country})
    if covered:
        conflict: str = "Yes"
    elif unknown or cut:
        conflict = "Unknown"
    else:
        conflict = "No"
    recycled = [f for f in facts if f.origin_kind == "recycled"]
    if mined:
        only_recycled = "No"
    elif cut or not recycled:
        only_recycled = "Unknown"
    else:
        only_recycled = "Yes"
    unlisted = [r.participant_id for r in rows if r.rmi_id is None]
    identified: str = "Unknown" if g.truncated else ("Yes" if rows else "No")
    return [
        Answer(
            "covered_countries",
            metal,
            conflict,
            {
                "countries": sorted({f.origin_country for f in mined if f.origin_country in covered_countries}),
                "lots": covered,
                "unknown_origin_lots": unknown,
                "cut_at_lots": cut,
            },
        ),
        Answer(
            "recycled_or_scrap",
            metal,
            only_recycled,
            {
                "recycled_lots": sorted(f.lot_id for f in recycled),
                "mined_lots": sorted(f.lot_id for f in mined),
                "cut_at_lots": cut,
            },
        ),
        Answer(
            "all_smelters_identified",
            metal,
            identified,
            {
                "smelters": [r.participant_id for r in rows],
                "rmi_listed": [r.rmi_id for r in rows if r.rmi_id],
                "not_rmi_listed": unlisted,
            },
        ),
        Answer(
            "all_from_smelters_found",
            metal,
            "No" if g.truncated else "Yes",
            {"truncated": g.truncated, "cut_at_lots": cut, "roots": sorted(roots)},
        ),
    ]


def _company(assessment: Mapping[str, Any] | None, letters: Sequence[str]) -> list[Answer]:
    """The company-level questions (CMRT A-J, EMRT A-G) from the filer's latest self-assessment (absent: unanswered;
    the self-assessment answers the CMRT's letters, which the EMRT's first seven follow: docs/filings.md)."""
    given: Mapping[str, Any] = (assessment or {}).get("cmrt_answers") or {}
    out = []
    for letter in letters:
        a = given.get(letter)
        answer = a.get("answer") if isinstance(a, Mapping) else a if isinstance(a, str) else None
        evidence: dict[str, Any] = {}
        if assessment is not None and answer is not None:
            evidence = {
                "assessment_id": assessment.get("assessment_id"),
                "submitted_at": assessment.get("submitted_at"),
                "comment": a.get("comment") if isinstance(a, Mapping) else None,
            }
        out.append(Answer(f"company_{letter}", None, answer, evidence))
    return out
