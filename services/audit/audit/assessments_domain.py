"""The trend of a participant's self-assessment scores, for its buyers and the operator: the latest submission and
the totals of the last `TREND_LENGTH`, each with the change since the one before it. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

TREND_LENGTH = 8


@dataclass(frozen=True, slots=True)
class Submission:
    assessment_id: str
    submitted_at: datetime
    questionnaire_version: str
    scores: dict[str, Any]
    total: Decimal


@dataclass(frozen=True, slots=True)
class Point:
    assessment_id: str
    submitted_at: datetime
    total: Decimal
    change: Decimal | None  # since the submission before it; None for the first one known


@dataclass(frozen=True, slots=True)
class Trend:
    latest: Submission | None
    change: Decimal | None  # the latest total minus the previous one (None: fewer than two)
    points: list[Point]  # oldest first, at most TREND_LENGTH


def trend(newest_first: Sequence[Submission], length: int = TREND_LENGTH) -> Trend:
    """From a participant's submissions, newest first (`length` + 1 are enough: the one before the oldest point gives
    that point's change)."""
    rows = list(newest_first[: length + 1])
    points: list[Point] = []
    for i, s in enumerate(rows[:length]):
        before = rows[i + 1] if i + 1 < len(rows) else None
        points.append(Point(s.assessment_id, s.submitted_at, s.total, s.total - before.total if before else None))
    points.reverse()
    latest = rows[0] if rows else None
    return Trend(latest, points[-1].change if points else None, points)
