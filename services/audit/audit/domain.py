"""Audit decisions and risk, as plain functions: what a flag's status may become, and how a lot's own and
inherited flags add up to its rating. No I/O. (The rules that raise flags are `audit/rules.py`; who may see a flag
or a lot is `shared.visibility`.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from audit.rules import SEVERITY_ORDER, Severity


class FlagStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class DecisionRefused(Exception):
    """A decision that cannot be taken on a flag in its current status (HTTP 409)."""


def check_decision(flag_id: str, current: FlagStatus | str, to: FlagStatus) -> None:
    """A resolved flag stays resolved; an acknowledged one is not acknowledged again (it may still be resolved)."""
    if current == FlagStatus.resolved:
        raise DecisionRefused(f"Flag {flag_id} is already resolved.")
    if to == FlagStatus.acknowledged and current == FlagStatus.acknowledged:
        raise DecisionRefused(f"Flag {flag_id} is already acknowledged.")


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
    """The highest severity among the flags that are not resolved, or "none"."""
    worst = max((SEVERITY_ORDER[f.severity] for f in flags if f.status != FlagStatus.resolved), default=-1)
    return "none" if worst < 0 else list(SEVERITY_ORDER)[worst].value


def exposure(lot_id: str, upstream: Mapping[str, int], flag: FlagOnLots) -> Exposure | None:
    """None when the flag is the lot's own (it names the lot); else where upstream it sits. `upstream` maps every
    lot upstream of `lot_id` (itself included, at depth 0) to its depth; the flag names at least one of them."""
    if lot_id in flag.lot_ids:
        return None
    at = min(upstream[x] for x in flag.lot_ids if x in upstream)
    return Exposure(next(x for x in flag.lot_ids if x in upstream and upstream[x] == at), at)
