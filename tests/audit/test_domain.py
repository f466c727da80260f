"""`audit/domain.py` without I/O: what a flag's status may become, and how flags add up to a lot's risk."""

from __future__ import annotations

import pytest

from audit.domain import DecisionRefused, Exposure, FlagOnLots, FlagStatus, check_decision, exposure, rating
from audit.rules import Severity


@pytest.mark.parametrize("to", [FlagStatus.acknowledged, FlagStatus.resolved])
def test_an_open_flag_may_be_acknowledged_or_resolved(to: FlagStatus) -> None:
    check_decision("F", FlagStatus.open, to)


def test_an_acknowledged_flag_may_be_resolved_but_not_acknowledged_again() -> None:
    check_decision("F", "acknowledged", FlagStatus.resolved)
    with pytest.raises(DecisionRefused, match="already acknowledged"):
        check_decision("F", "acknowledged", FlagStatus.acknowledged)


@pytest.mark.parametrize("to", [FlagStatus.acknowledged, FlagStatus.resolved])
def test_a_resolved_flag_stays_resolved(to: FlagStatus) -> None:
    with pytest.raises(DecisionRefused, match="Flag F is already resolved"):
        check_decision("F", "resolved", to)


def test_the_rating_is_the_worst_severity_not_resolved() -> None:
    flags = [
        FlagOnLots(["A"], Severity.critical, "resolved"),
        FlagOnLots(["A"], Severity.medium, "acknowledged"),
        FlagOnLots(["B"], Severity.low, "open"),
    ]
    assert rating(flags) == "medium"
    assert rating(flags[:1]) == "none"
    assert rating([]) == "none"
    assert rating([FlagOnLots(["A"], Severity.info, "open")]) == "info"


def test_a_flag_naming_the_lot_is_its_own() -> None:
    assert exposure("A", {"A": 0, "B": 1}, FlagOnLots(["B", "A"], Severity.high, "open")) is None


def test_an_inherited_flag_sits_at_its_nearest_upstream_lot() -> None:
    upstream = {"A": 0, "B": 1, "C": 2, "D": 2}
    assert exposure("A", upstream, FlagOnLots(["C", "B", "X"], Severity.high, "open")) == Exposure("B", 1)
    assert exposure("A", upstream, FlagOnLots(["D", "C"], Severity.high, "open")) == Exposure("D", 2)
