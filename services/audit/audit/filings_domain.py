"""Whose material is in what a participant consumed, by mass: the attribution every filing reads (CMRT and EMRT
smelter lists, the responsibly-produced share, the battery passport's due diligence). Pure: no I/O.

The graph is the upstream genealogy of some lots (the *roots*: what was consumed, or a product lot), as custody
recorded it and audit projected it: each lot made by a transformation names that transformation, and each
transformation its inputs with the mass drawn from each. Mass flows up the graph: a transformation's outputs are
taken to be one mix of its inputs, so the root mass attributed to an output is shared among the transformation's
inputs in proportion to the mass drawn from each (a transformation records which lots went in and how much, not
which input ended in which output). What reaches an origin lot (a mine's, a declared one, a recycler's) is the share
of the roots that came from it; what passes a smelting is the share that smelter produced.

A *physical* flow is the part of that mass that kept a physical link to its source all the way: every transformation
between the root and the node followed a model that keeps one (`shared.vocab.claims_physical`: identity preserved or
segregated). A claim that needs the material itself (Fairmined) is made only on the physical flow; a mass-balance
claim is made on the whole flow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from audit.rules import Cert
from shared.vocab import claims_physical, smelting_basis


@dataclass(frozen=True, slots=True)
class Step:
    """A transformation in the graph: who did it, when, under which chain-of-custody model (None: none on record),
    its inputs with the mass drawn from each (kg) and its outputs."""

    transformation_id: str
    kind: str
    actor: str
    actor_kind: str
    occurred_at: datetime
    custody_model: str | None
    inputs: tuple[tuple[str, Decimal], ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LotFacts:
    """What audit's projection holds of a lot in the graph (its static facts: what it is and where it came from)."""

    lot_id: str
    mineral: str
    form: str
    mass_kg: Decimal
    origin_kind: str  # mine | declared | recycled | transformation
    origin_participant: str | None  # the mine, the declarant, the recycler
    origin_country: str | None
    origin_region: str | None
    origin_mining_type: str | None  # asm | lsm
    origin_source: str | None  # recycled lots: recycled | scrap
    origin_at: datetime


@dataclass(frozen=True, slots=True)
class PartyFacts:
    """A participant named in the graph (a mine, a recycler, a smelter...), as audit's projection holds it."""

    id: str
    kind: str
    name: str
    country: str
    region: str | None
    rmi_smelter_id: str | None
    disclosure: str | None


@dataclass(slots=True)
class Graph:
    """The upstream genealogy of some lots, with what the filings need to say about it: `made_by` (lot -> the
    transformation that made it), the lots' facts, the participants named (origins' participants and transformers)
    and their certifications (`audit.rules.Cert`, by participant: `audit.rules.held` gives the one in force on a
    day). `truncated`: the walk stopped at its depth or size bound, so the graph is not the whole genealogy."""

    made_by: dict[str, Step] = field(default_factory=dict)
    lots: dict[str, LotFacts] = field(default_factory=dict)
    parties: dict[str, PartyFacts] = field(default_factory=dict)
    certs: dict[str, list[Cert]] = field(default_factory=dict)
    truncated: bool = False
    _smelting: dict[str, str | None] = field(default_factory=dict, repr=False)

    def smelting(self, step: Step) -> str | None:
        """Why `step` is screened as a smelting or refining (`shared.vocab.smelting_basis`), None when it is not;
        worked out once per transformation (each filing asks for every step of every metal)."""
        t = step.transformation_id
        if t not in self._smelting:
            ins = (self.lots[i].form if i in self.lots else None for i, _ in step.inputs)
            outs = (self.lots[o].form if o in self.lots else None for o in step.outputs)
            self._smelting[t] = smelting_basis(step.kind, step.actor_kind, ins, outs)
        return self._smelting[t]


@dataclass(slots=True)
class Flow:
    """Root mass (kg) attributed through a lot or a transformation, and the part of it with a physical claim."""

    kg: float = 0.0
    physical_kg: float = 0.0


@dataclass(slots=True)
class Attribution:
    """Where the roots' mass came from: per lot reached (roots included) and per transformation passed."""

    lots: dict[str, Flow] = field(default_factory=dict)
    steps: dict[str, Flow] = field(default_factory=dict)

    def origins(self, made_by: Mapping[str, Step]) -> dict[str, Flow]:
        """The lots reached that no transformation made (in the graph): where the material came from."""
        return {lot: f for lot, f in self.lots.items() if lot not in made_by}


def attribute(made_by: Mapping[str, Step], roots: Mapping[str, Decimal | float]) -> Attribution:
    """Attribute `roots` (lot id -> kg: what was consumed of each, or a lot's mass) up the graph `made_by` (lot id ->
    the transformation that made it; an origin lot, or one whose maker is outside the graph, is absent).

    Each lot and transformation is visited once, after everything downstream of it in the graph (Kahn's order), so
    a graph whose paths meet again (a lot feeding two transformations that both reach the roots) costs its size, not
    its number of paths. A transformation whose inputs carry no mass passes nothing on."""
    out = Attribution()
    lots = out.lots
    steps = out.steps
    # what is reached, and how many reached consumers each lot and transformation waits for
    waiting: dict[str, int] = {}
    step_waiting: dict[str, int] = {}
    stack = list(roots)
    while stack:
        lot = stack.pop()
        if lot in lots:
            continue
        lots[lot] = Flow()
        waiting.setdefault(lot, 0)
        step = made_by.get(lot)
        if step is None:
            continue
        t = step.transformation_id
        if t not in steps:
            steps[t] = Flow()
            step_waiting[t] = 0
            for parent, _ in step.inputs:
                waiting[parent] = waiting.get(parent, 0) + 1
                stack.append(parent)
        step_waiting[t] += 1
    for lot, kg in roots.items():
        f = lots[lot]
        f.kg += float(kg)
        f.physical_kg += float(kg)
    ready = deque(lot for lot, n in waiting.items() if n == 0)
    while ready:
        lot = ready.popleft()
        step = made_by.get(lot)
        if step is None:
            continue
        t = step.transformation_id
        f, s = lots[lot], steps[t]
        s.kg += f.kg
        s.physical_kg += f.physical_kg
        step_waiting[t] -= 1
        if step_waiting[t]:
            continue
        total = float(sum(m for _, m in step.inputs))
        physical = claims_physical(step.custody_model)
        for parent, m in step.inputs:
            p = lots[parent]
            if total > 0:
                w = float(m) / total
                p.kg += s.kg * w
                if physical:
                    p.physical_kg += s.physical_kg * w
            waiting[parent] -= 1
            if waiting[parent] == 0:
                ready.append(parent)
    return out


def share(part: float, whole: float) -> float:
    """`part` of `whole` as a fraction rounded to 6 places (0 when `whole` is 0)."""
    return round(part / whole, 6) if whole > 0 else 0.0


def total(flows: Iterable[Flow]) -> float:
    return sum(f.kg for f in flows)
