"""`rules.substantiated_grievance` without I/O: a lot is from the participant a substantiated grievance is about when
it came into being there (mined, made, declared as from it) on a day of the grievance's period; the flag carries the
triage's severity, and its evidence the grievance's id, period, severity and public note, never the filer's words.
Also the projection's handler in memory: a lot that arrives after the triage is flagged like one that was there."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from audit import rules
from audit.projection.context import Context
from audit.projection.decode import NewLot, grievance_triaged
from audit.projection.handlers import grievances, lots
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.rules import Grievance, Rule, Severity, Thresholds
from shared.events import new_event

MINE = "mine-1"
G = Grievance("g-1", MINE, date(2026, 9, 1), date(2026, 10, 15), Severity.critical, "Confirmed by a site visit.")


def judge(lot_id: str = "LOT-1", *, kind: str = "mine", who: str | None = MINE, at: datetime) -> rules.Finding | None:
    return rules.substantiated_grievance(
        grievance=G, lot_id=lot_id, origin_kind=kind, origin_participant=who, origin_at=at
    )


def test_a_lot_of_the_mine_dated_in_the_period_is_flagged_with_the_triage_severity() -> None:
    f = judge(at=datetime(2026, 9, 10, 8, tzinfo=UTC))
    assert f is not None
    assert f.rule == Rule.substantiated_grievance
    assert f.level == Severity.critical  # the triage's, not the rule's default (high)
    assert f.cause == "g-1:LOT-1"
    assert f.participants == (MINE,)
    assert f.evidence == {
        "grievance_id": "g-1",
        "participant_id": MINE,
        "period_from": "2026-09-01",
        "period_to": "2026-10-15",
        "severity": "critical",
        "public_note": "Confirmed by a site visit.",
        "lot_origin": "mine",
        "lot_dated": "2026-09-10",
    }


@pytest.mark.parametrize(
    "at",
    [datetime(2026, 9, 1, 0, 0, tzinfo=UTC), datetime(2026, 10, 15, 23, 59, 59, tzinfo=UTC)],
    ids=["first day", "last day"],
)
def test_both_ends_of_the_period_count(at: datetime) -> None:
    assert judge(at=at) is not None


@pytest.mark.parametrize(
    "at",
    [datetime(2026, 8, 31, 23, 59, tzinfo=UTC), datetime(2026, 10, 16, 0, 0, tzinfo=UTC)],
    ids=["the day before", "the day after"],
)
def test_outside_the_period_nothing(at: datetime) -> None:
    assert judge(at=at) is None


def test_the_day_is_the_utc_day() -> None:
    # 2026-10-16 01:00 in UTC+3 is 2026-10-15 22:00 UTC: in the period
    assert judge(at=datetime(2026, 10, 16, 1, tzinfo=timezone(timedelta(hours=3)))) is not None


def test_another_participants_lot_or_a_lot_without_one_is_not_flagged() -> None:
    assert judge(who="mine-2", at=datetime(2026, 9, 10, tzinfo=UTC)) is None
    assert judge(who=None, kind="external", at=datetime(2026, 9, 10, tzinfo=UTC)) is None


@pytest.mark.parametrize(("kind", "how"), [("transformation", "made by"), ("external", "declared as from")])
def test_lots_made_there_or_declared_as_from_there_count(kind: str, how: str) -> None:
    f = judge(kind=kind, at=datetime(2026, 9, 10, tzinfo=UTC))
    assert f is not None and f.evidence["lot_origin"] == kind and how in f.summary


def test_nothing_of_the_filer_in_the_flag() -> None:
    f = judge(at=datetime(2026, 9, 10, tzinfo=UTC))
    assert f is not None
    assert set(f.evidence) == {
        "grievance_id",
        "participant_id",
        "period_from",
        "period_to",
        "severity",
        "public_note",
        "lot_origin",
        "lot_dated",
    }


# --- the handler, in memory: before and after the triage give the same flags --------------------------------------


def lot(lot_id: str, at: datetime, who: str = MINE, kind: str = "mine") -> NewLot:
    return NewLot(lot_id, "tin", "ore", Decimal(1), kind, who, "CD", "CD-SK", "asm", who, f"ev-{lot_id}", at, at, at)


def triaged(**over: object) -> Grievance | None:
    data = {
        "triage_id": "t-1",
        "grievance_id": G.id,
        "decision": "substantiated",
        "participant_id": MINE,
        "period_from": "2026-09-01",
        "period_to": "2026-10-15",
        "severity": "critical",
        "public_note": G.public_note,
        "decided_by": "operator",
        "decided_at": "2026-12-01T10:00:00Z",
        **over,
    }
    return grievance_triaged(new_event("audit.grievance.triaged", source="/audit", key=G.id, data=data))


def findings(new: list[NewLot], triage_first: bool) -> dict[tuple[str, str], rules.Finding]:
    ctx = Context(State(), Thresholds(), Journal())
    g = triaged()
    assert g == G
    if triage_first:
        grievances.on_triaged(ctx, g)
    for one in new:
        lots.new_lot(ctx, one)  # indexes it (a mine's origin lots as `lots_by_mine`) and judges it
    if not triage_first:
        grievances.on_triaged(ctx, g)
    return dict(ctx.changes.findings)


def test_a_lot_that_arrives_after_the_triage_is_flagged_as_one_that_was_there() -> None:
    new = [
        lot("IN", datetime(2026, 9, 10, tzinfo=UTC)),
        lot("OUT", datetime(2026, 11, 1, tzinfo=UTC)),
        lot("MADE", datetime(2026, 10, 1, tzinfo=UTC), kind="transformation"),
        lot("DECLARED", datetime(2026, 9, 2, tzinfo=UTC), kind="external"),
        lot("OTHER", datetime(2026, 9, 10, tzinfo=UTC), who="mine-2"),
    ]
    before, after = findings(new, True), findings(new, False)
    assert before == after
    assert {f.lot_id for f in before.values()} == {"IN", "MADE", "DECLARED"}
    assert {f.evidence["lot_origin"] for f in before.values()} == {"mine", "transformation", "external"}


def test_dismissed_or_under_review_asks_nothing_of_the_projection() -> None:
    assert triaged(decision="dismissed", participant_id=None, period_from=None, period_to=None, severity=None) is None
    assert triaged(decision="under_review") is None


def test_a_period_that_ends_before_it_starts_is_not_applied() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        triaged(period_from="2026-10-15", period_to="2026-09-01")
