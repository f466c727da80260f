"""`audit/domain.py` without I/O: who may decide what on a flag, what its status may become, and how flags add up to a
lot's risk."""

from __future__ import annotations

import pytest

from audit.domain import (
    Caller,
    DecisionKind,
    DecisionRefused,
    Exposure,
    FlagOnLots,
    FlagStatus,
    NotYours,
    Standing,
    authorize,
    check_decision,
    exposure,
    officer_covers,
    rating,
)
from audit.rules import Severity

# --- separation of duties: who may decide what on a flag -------------------------------------------------------

MINE = Caller("mine-1", "mine")
TRADER = Caller("trader-1", "trader")
OPERATOR = Caller("operator", "operator")
OFFICER_ALL = Caller("officer-1", "officer", None)
OFFICER_OF_MINE = Caller("officer-2", "officer", frozenset({"mine-1"}))
OFFICER_ELSEWHERE = Caller("officer-3", "officer", frozenset({"mine-9"}))
PARTIES = ["mine-1"]


def test_a_participant_never_resolves_not_even_its_own_flag() -> None:
    for kind in (DecisionKind.resolve, DecisionKind.reopen):
        with pytest.raises(NotYours, match="Only a compliance officer"):
            authorize(kind, MINE, PARTIES, Standing(named=True, holding=["L1"]))
        with pytest.raises(NotYours, match="Only a compliance officer"):
            authorize(kind, TRADER, PARTIES, Standing(holding=["L1"]))


@pytest.mark.parametrize("kind", list(DecisionKind))
def test_the_shared_operator_identity_decides_nothing(kind: DecisionKind) -> None:
    with pytest.raises(NotYours, match="POST /officers"):
        authorize(kind, OPERATOR, PARTIES, Standing(named=True, holding=["L1"], held_by=frozenset({"mine-1"})))


def test_an_officer_resolves_within_its_scope() -> None:
    assert authorize(DecisionKind.resolve, OFFICER_ALL, PARTIES, Standing()) == {
        "as": "officer",
        "scope": "all",
        "covers": ["all"],
    }
    named = authorize(DecisionKind.resolve, OFFICER_OF_MINE, PARTIES, Standing())
    assert named["covers"] == ["mine-1"]
    # a flag that does not name the mine, on a lot the mine held: still the mine's officer's
    held = authorize(DecisionKind.reopen, OFFICER_OF_MINE, ["trader-1"], Standing(held_by=frozenset({"mine-1"})))
    assert held["covers"] == ["mine-1"]
    with pytest.raises(NotYours, match="outside your scope"):
        authorize(DecisionKind.resolve, OFFICER_ELSEWHERE, PARTIES, Standing(held_by=frozenset({"trader-1"})))


def test_officers_resolve_and_participants_acknowledge_and_respond() -> None:
    for kind in (DecisionKind.acknowledge, DecisionKind.respond):
        with pytest.raises(NotYours, match="compliance officer resolves"):
            authorize(kind, OFFICER_ALL, PARTIES, Standing())
    assert authorize(DecisionKind.acknowledge, TRADER, PARTIES, Standing(holding=["L2", "L1"])) == {
        "as": "holder",
        "lots": ["L1", "L2"],
    }
    with pytest.raises(NotYours, match="current holder"):
        authorize(DecisionKind.acknowledge, MINE, PARTIES, Standing(named=True))  # named, holds nothing now
    assert authorize(DecisionKind.respond, MINE, PARTIES, Standing(named=True)) == {"as": "named"}
    with pytest.raises(NotYours, match="names"):
        authorize(DecisionKind.respond, TRADER, PARTIES, Standing(holding=["L1"]))


def test_officer_covers_names_and_former_holders() -> None:
    assert officer_covers(None, [], frozenset()) == ["all"]
    assert officer_covers(frozenset({"a", "b", "c"}), ["b"], frozenset({"c", "d"})) == ["b", "c"]
    assert officer_covers(frozenset({"a"}), ["b"], frozenset({"c"})) == []


def test_what_a_decision_does_to_the_status() -> None:
    assert check_decision("F", DecisionKind.resolve, FlagStatus.open) == FlagStatus.resolved
    assert check_decision("F", DecisionKind.reopen, "resolved") == FlagStatus.open
    assert check_decision("F", DecisionKind.acknowledge, "open") is None
    assert check_decision("F", DecisionKind.acknowledge, "resolved") is None  # a holder may still acknowledge
    assert check_decision("F", DecisionKind.respond, "open") is None
    with pytest.raises(DecisionRefused, match="Flag F is already resolved"):
        check_decision("F", DecisionKind.resolve, "resolved")
    with pytest.raises(DecisionRefused, match="only a resolved flag is re-opened"):
        check_decision("F", DecisionKind.reopen, "open")
    with pytest.raises(DecisionRefused, match="already acknowledged"):
        check_decision("F", DecisionKind.acknowledge, "open", acknowledged_by_caller=True)
    with pytest.raises(DecisionRefused, match="re-open it to respond"):
        check_decision("F", DecisionKind.respond, "resolved")


def test_the_rating_is_the_worst_severity_not_resolved() -> None:
    flags = [
        FlagOnLots(["A"], Severity.critical, "resolved"),
        FlagOnLots(["A"], Severity.medium, "open"),
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
