"""Audit decisions and risk, as plain functions: who may decide what on a flag (separation of duties), what its
status may become, and how a lot's own and inherited flags add up to its rating. No I/O. (The rules that raise
flags are `audit/rules.py`; who may see a flag or a lot is `shared.visibility`.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from audit.rules import SEVERITY_ORDER, Severity


class FlagStatus(StrEnum):
    open = "open"
    resolved = "resolved"
    withdrawn = "withdrawn"  # the system's: late reference data shows the rule does not hold (nobody had decided)


COUNTED = frozenset({FlagStatus.open})  # the statuses a lot's rating counts


class DecisionKind(StrEnum):
    acknowledge = "acknowledge"  # a current holder of an affected lot has seen it (one per participant)
    respond = "respond"  # a party the flag names answers, with evidence
    resolve = "resolve"  # a compliance officer closes it, saying what was found
    reopen = "reopen"  # a compliance officer opens it again


class DecisionRefused(Exception):
    """A decision that cannot be taken on a flag in its current state (HTTP 409)."""


class NotYours(Exception):
    """A decision the caller may not take on this flag (HTTP 403); the message says who may."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who decides: `kind` is `operator`, `officer` or a participant kind; `scope` the participants an officer
    oversees (None: all of them)."""

    id: str
    kind: str
    scope: frozenset[str] | None = None

    @property
    def is_officer(self) -> bool:
        return self.kind == "officer"

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


@dataclass(frozen=True, slots=True)
class Standing:
    """What ties a caller to a flag. `named`: one of the parties the flag is about. `holding`: the affected lots
    (the flag's own and every lot made from them) the caller holds now. `held_by`: everyone who holds or held one
    of the flag's own lots (what an officer's scope is matched against)."""

    named: bool = False
    holding: Sequence[str] = ()
    held_by: frozenset[str] = frozenset()


def officer_covers(scope: frozenset[str] | None, participants: Sequence[str], held_by: frozenset[str]) -> list[str]:
    """Which overseen participants make a flag an officer's: those the flag names, and those who hold or held one
    of its own lots. Every officer scoped to all covers every flag (`["all"]`); empty: not this officer's flag."""
    if scope is None:
        return ["all"]
    return sorted(scope.intersection(participants) | scope.intersection(held_by))


def authorize(kind: DecisionKind, caller: Caller, participants: Sequence[str], standing: Standing) -> dict[str, Any]:
    """Who may take which decision on a flag (separation of duties); returns the authority it is taken under (kept
    with the decision), raises NotYours.

    - acknowledge: a participant holding a lot the flag affects, each for itself;
    - respond (a note and evidence): a participant the flag names;
    - resolve, reopen: a compliance officer whose scope covers the flag (see `officer_covers`);
    - the shared operator identity decides nothing (register a compliance officer), and no participant resolves,
      not even one the flag does not name.
    """
    if caller.is_operator:
        raise NotYours(
            "The shared operator token cannot decide on flags: each decision is someone's. Register a compliance "
            "officer in the registry (POST /officers) and use the token it gets."
        )
    if kind in (DecisionKind.resolve, DecisionKind.reopen):
        if not caller.is_officer:
            raise NotYours(
                f"Only a compliance officer may {kind.value} a flag; a participant may acknowledge it (if it holds a "
                "lot the flag affects) or respond with evidence (if the flag names it)."
            )
        covers = officer_covers(caller.scope, participants, standing.held_by)
        if not covers:
            raise NotYours(
                "This flag is outside your scope: it names none of the participants you oversee, and none of them "
                "holds or held its lots."
            )
        return {"as": "officer", "scope": "all" if caller.scope is None else sorted(caller.scope), "covers": covers}
    if caller.is_officer:
        raise NotYours(
            f"A compliance officer resolves or re-opens flags; to {kind.value} is for the participants concerned."
        )
    if kind == DecisionKind.acknowledge:
        if not standing.holding:
            raise NotYours("Only a current holder of a lot this flag affects acknowledges it.")
        return {"as": "holder", "lots": sorted(standing.holding)}
    if not standing.named:
        raise NotYours("Only a participant this flag names may respond to it.")
    return {"as": "named"}


def check_decision(
    flag_id: str, kind: DecisionKind, status: FlagStatus | str, *, acknowledged_by_caller: bool = False
) -> FlagStatus | None:
    """Whether `kind` may be taken on a flag in `status`; returns the status it leads to (None: unchanged).

    A flag is resolved once (an officer may re-open it, then resolve it again); a participant acknowledges a flag
    once; responses are for open flags (after a resolution, ask an officer to re-open it). A withdrawn flag (the
    rule no longer holds, by the system) may still be resolved by an officer, to put a person's word on it;
    participants neither acknowledge nor respond to it, and it is not re-opened by a person (the system opens it
    again if the rule holds again)."""
    if status == FlagStatus.withdrawn and kind != DecisionKind.resolve:
        raise DecisionRefused(
            f"Flag {flag_id} is withdrawn: reference data received since shows its rule does not hold (see "
            "evidence.cleared_by). Only a compliance officer may still resolve it."
        )
    if kind == DecisionKind.resolve:
        if status == FlagStatus.resolved:
            raise DecisionRefused(f"Flag {flag_id} is already resolved.")
        return FlagStatus.resolved
    if kind == DecisionKind.reopen:
        if status != FlagStatus.resolved:
            raise DecisionRefused(f"Flag {flag_id} is open; only a resolved flag is re-opened.")
        return FlagStatus.open
    if kind == DecisionKind.acknowledge:
        if acknowledged_by_caller:
            raise DecisionRefused(f"You already acknowledged flag {flag_id}.")
        return None
    if status == FlagStatus.resolved:
        raise DecisionRefused(f"Flag {flag_id} is resolved; ask a compliance officer to re-open it to respond.")
    return None


@dataclass(frozen=True, slots=True)
class FlagOnLots:
    """What the risk of a lot needs to know of a flag."""

    lot_ids: Sequence[str]
    severity: Severity
    status: FlagStatus | str


@dataclass(frozen=True, slots=True)
class Exposure:
    """A flag on an upstream lot: the nearest of its lots upstream of the lot asked about, and how far up it is."""

    lot_id: str
    depth: int


def rating(flags: Sequence[FlagOnLots]) -> str:
    """The highest severity among the open flags (neither resolved nor withdrawn), or "none"."""
    worst = max((SEVERITY_ORDER[f.severity] for f in flags if f.status in COUNTED), default=-1)
    return "none" if worst < 0 else list(SEVERITY_ORDER)[worst].value


def exposure(lot_id: str, upstream: Mapping[str, int], flag: FlagOnLots) -> Exposure | None:
    """None when the flag is the lot's own (it names the lot); else where upstream it sits. `upstream` maps every
    lot upstream of `lot_id` (itself included, at depth 0) to its depth; the flag names at least one of them."""
    if lot_id in flag.lot_ids:
        return None
    at = min(upstream[x] for x in flag.lot_ids if x in upstream)
    return Exposure(next(x for x in flag.lot_ids if x in upstream and upstream[x] == at), at)
