"""The self-assessment trend audit shows buyers (pure), and the projection's decoder of
`registry.self_assessment.submitted`: what the `self_assessments` table cannot hold is refused before anything
changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from audit.assessments_domain import Submission, trend
from audit.projection.handlers import HANDLERS
from shared.events import new_event

SUBMITTED = "registry.self_assessment.submitted"


def sub(n: int, total: str) -> Submission:
    return Submission(f"a{n}", datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n), "2026-12", {}, Decimal(total))


def test_the_trend_is_the_last_eight_oldest_first_each_with_its_change() -> None:
    rows = [sub(n, f"{n * 10}.5") for n in range(9, -1, -1)]  # newest first: a9 .. a0
    t = trend(rows)
    assert t.latest == rows[0]
    assert [p.assessment_id for p in t.points] == [f"a{n}" for n in range(2, 10)]
    assert all(p.change == Decimal(10) for p in t.points)  # a2's change is against a1, outside the eight
    assert t.change == Decimal(10)


def test_a_first_submission_has_no_change_and_none_is_an_empty_trend() -> None:
    t = trend([sub(0, "42.0")])
    assert t.latest is not None and t.change is None
    assert [(p.total, p.change) for p in t.points] == [(Decimal("42.0"), None)]
    falling = trend([sub(1, "30.0"), sub(0, "42.5")])
    assert falling.change == Decimal("-12.5") and [p.change for p in falling.points] == [None, Decimal("-12.5")]
    empty = trend([])
    assert (empty.latest, empty.change, empty.points) == (None, None, [])


def test_an_event_the_table_cannot_hold_is_refused_by_the_decoder() -> None:
    decoder, _ = HANDLERS[SUBMITTED]
    good = {
        "assessment_id": "x",
        "participant_id": "p",
        "submitted_at": "2026-12-06T09:00:00Z",
        "questionnaire_version": "2026-12",
        "scores": {"policy": 50.0, "risk_identification": None, "risk_response": 0, "audit": 100, "reporting": 1.5},
        "total": 37.9,
        "cmrt_answers": {"A": {"answer": "Yes", "comment": None}},
    }
    ev = decoder(new_event(SUBMITTED, source="/registry", key="p", data=good))
    assert ev.total == Decimal("37.9") and ev.scores["risk_identification"] is None
    for bad in (
        {"total": 101},
        {"total": "50"},
        {"scores": {**good["scores"], "policy": -1}},
        {"scores": {"policy": 1}},
        {"cmrt_answers": {"K": {"answer": "Yes", "comment": None}}},
        {"cmrt_answers": {"A": {"answer": "Maybe", "comment": None}}},
    ):
        with pytest.raises((ValueError, TypeError)):
            decoder(new_event(SUBMITTED, source="/registry", key="p", data={**good, **bad}))
