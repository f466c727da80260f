"""Companies' due-diligence self-assessments (`registry.self_assessment.submitted`): one row each in
`self_assessments`, through the batch statements (`statements.INSERT_SELF_ASSESSMENTS_SQL`). Nothing is kept in the
in-memory state (no rule reads them) and no flag is raised; a submission is never changed, so a redelivered or
replayed event writes the same row (ON CONFLICT DO NOTHING): live and replay end alike.

The decoder is here, beside its handler: it checks every field the row needs (the five steps' scores 0..100 or
null, a total 0..100, the CMRT letters A-J answered Yes or No), so an event that cannot be stored raises before
anything changed and is kept in `received_events` only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from audit.projection import statements
from audit.projection.context import Context
from audit.projection.decode import utc
from shared.events import CloudEvent

STEPS = ("policy", "risk_identification", "risk_response", "audit", "reporting")
CMRT_LETTERS = frozenset("ABCDEFGHIJ")
MAX_COMMENT = 2000
HUNDRED = Decimal(100)
TENTH = Decimal("0.1")


@dataclass(slots=True)
class SelfAssessmentSubmitted:
    assessment_id: str
    participant_id: str
    submitted_at: datetime
    questionnaire_version: str
    scores: dict[str, float | None]
    total: Decimal
    cmrt_answers: dict[str, dict[str, str | None]]
    event_id: str


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v or len(v) > 200:
        raise ValueError(f"{what} must be a non-empty string of at most 200 characters")
    return v


def _score(v: Any, what: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{what} must be a number")
    d = Decimal(str(v)).quantize(TENTH)
    if not 0 <= d <= HUNDRED:
        raise ValueError(f"{what} {v!r} is not within 0..100")
    return d


def _scores(v: Any) -> dict[str, float | None]:
    if not isinstance(v, dict) or set(v) != set(STEPS):
        raise ValueError(f"scores must have exactly the steps {', '.join(STEPS)}")
    return {s: None if v[s] is None else float(_score(v[s], f"scores.{s}")) for s in STEPS}


def _cmrt(v: Any) -> dict[str, dict[str, str | None]]:
    if not isinstance(v, dict) or not set(v) <= CMRT_LETTERS:
        raise ValueError("cmrt_answers must be keyed by the letters A-J")
    out: dict[str, dict[str, str | None]] = {}
    for letter in sorted(v):
        a = v[letter]
        if not isinstance(a, dict) or set(a) != {"answer", "comment"} or a["answer"] not in ("Yes", "No"):
            raise ValueError(f"cmrt_answers.{letter} must be {{answer: Yes | No, comment}}")
        comment = a["comment"]
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
            raise ValueError(f"cmrt_answers.{letter}.comment must be a string of at most {MAX_COMMENT} characters")
        out[letter] = {"answer": a["answer"], "comment": comment}
    return out


def decode(e: CloudEvent) -> SelfAssessmentSubmitted:
    d = e.data
    submitted = datetime.fromisoformat(_text(d["submitted_at"], "submitted_at"))
    return SelfAssessmentSubmitted(
        _text(d["assessment_id"], "assessment_id"),
        _text(d["participant_id"], "participant_id"),
        utc(submitted),
        _text(d["questionnaire_version"], "questionnaire_version"),
        _scores(d["scores"]),
        _score(d["total"], "total"),
        _cmrt(d["cmrt_answers"]),
        e.id,
    )


def on_submitted(ctx: Context, ev: SelfAssessmentSubmitted) -> None:
    row = (
        ev.assessment_id,
        ev.participant_id,
        ev.submitted_at,
        ev.questionnaire_version,
        statements.to_json(ev.scores),
        ev.total,
        statements.to_json(ev.cmrt_answers),
        ev.event_id,
    )
    ctx.journal.set(ctx.changes.self_assessments, ev.assessment_id, row)
