"""Self-assessment use cases: the questionnaire, a submission (checked, scored, stored whole, published as
`registry.self_assessment.submitted` without the participant's comments or links) and reading the history. Never
commits.

Who: the participant itself submits (the operator may, on its behalf); the participant, the operator and the
compliance officers overseeing it read. Anyone else reads a participant that does not exist (404, no oracle)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from registry import assessments_repository as repository
from registry import assessments_schemas as schemas
from registry.assessments_domain import (
    CMRT_SUBJECTS,
    QUESTIONNAIRE_VERSION,
    QUESTIONS,
    STEP_TITLES,
    Answer,
    AssessmentError,
    Step,
    score,
)
from registry.assessments_models import SelfAssessment
from shared.auth import Principal, refuse_regulator
from shared.events import format_time, new_event
from shared.outbox import enqueue
from shared.problems import Forbidden, InvalidInput, NotFound
from shared.topics import REGISTRY_EVENTS

SOURCE = "/registry"
SUBMITTED = "registry.self_assessment.submitted"


def questionnaire() -> schemas.Questionnaire:
    return schemas.Questionnaire(
        questionnaire_version=QUESTIONNAIRE_VERSION,
        steps=[schemas.StepOut(step=s, number=i, title=STEP_TITLES[s]) for i, s in enumerate(Step, start=1)],
        questions=[
            schemas.QuestionOut(
                id=q.id,
                step=q.step,
                text=q.text,
                answer_type=q.answer_type,
                options=[schemas.OptionOut(value=o.value, label=o.label, credit=float(o.credit)) for o in q.options],
                weight=q.weight,
                evidence_expected=q.evidence_expected,
                required=q.required,
                cmrt_question=q.cmrt,
            )
            for q in QUESTIONS
        ],
        cmrt_questions=[schemas.CmrtSubject(letter=k, subject=v) for k, v in CMRT_SUBJECTS.items()],
    )


def _unknown(participant_id: str) -> NotFound:
    return NotFound(f"No participant {participant_id!r}.")


def reads(who: Principal, participant_id: str) -> bool:
    """The participant itself, the operator and the officers overseeing it."""
    return who.is_operator or who.oversees(participant_id) or (who.is_participant and who.subject == participant_id)


async def _known(session: AsyncSession, who: Principal, participant_id: str) -> None:
    if not reads(who, participant_id) or await repository.participant(session, participant_id) is None:
        raise _unknown(participant_id)


def _scores(scores: dict[Step, Decimal | None]) -> dict[str, float | None]:
    return {s.value: (float(v) if v is not None else None) for s, v in scores.items()}


def summary(a: SelfAssessment) -> schemas.SelfAssessmentSummary:
    return schemas.SelfAssessmentSummary(
        assessment_id=a.id,
        participant_id=a.participant_id,
        questionnaire_version=a.questionnaire_version,
        submitted_at=a.submitted_at,
        submitted_by=a.submitted_by,
        scores=schemas.StepScores.model_validate(a.scores),
        total=float(a.total),
    )


def full(a: SelfAssessment) -> schemas.SelfAssessment:
    return schemas.SelfAssessment(
        **summary(a).model_dump(),
        cmrt_answers={k: schemas.CmrtAnswer.model_validate(v) for k, v in a.cmrt_answers.items()},
        answers=[schemas.AnswerOut.model_validate(x) for x in a.answers],
    )


def event_data(a: SelfAssessment) -> dict[str, Any]:
    """What leaves the registry: the scores and the CMRT answers, never the comments or the evidence links."""
    return {
        "assessment_id": a.id,
        "participant_id": a.participant_id,
        "submitted_at": format_time(a.submitted_at),
        "questionnaire_version": a.questionnaire_version,
        "scores": a.scores,
        "total": float(a.total),
        "cmrt_answers": a.cmrt_answers,
    }


async def submit(
    *, session: AsyncSession, who: Principal, participant_id: str, body: schemas.SelfAssessmentCreate
) -> SelfAssessment:
    refuse_regulator(who, "submit self-assessments")
    if not (who.is_operator or (who.is_participant and who.subject == participant_id)):
        if reads(who, participant_id):
            raise Forbidden("Only the participant itself, or the operator on its behalf, submits its self-assessment.")
        raise _unknown(participant_id)
    if await repository.participant(session, participant_id) is None:
        raise _unknown(participant_id)
    try:
        scored = score([Answer(a.question_id, a.answer) for a in body.answers])
    except AssessmentError as exc:
        raise InvalidInput(exc.where, exc.msg) from exc
    row = SelfAssessment(
        id=str(uuid.uuid4()),
        participant_id=participant_id,
        questionnaire_version=body.questionnaire_version,
        submitted_at=datetime.now(UTC),
        submitted_by="operator" if who.is_operator else who.subject,
        answers=[a.model_dump(mode="json") for a in body.answers],
        scores=_scores(scored.scores),
        total=scored.total,
        cmrt_answers=scored.cmrt_answers,
    )
    row = await repository.add(session, row)
    event = new_event(SUBMITTED, source=SOURCE, key=participant_id, data=event_data(row), time=row.submitted_at)
    await enqueue(session, REGISTRY_EVENTS, [event])
    return row


async def history(
    *, session: AsyncSession, who: Principal, participant_id: str, before: int | None, limit: int
) -> tuple[list[SelfAssessment], bool]:
    """A page of submissions, newest first, and whether older ones follow."""
    await _known(session, who, participant_id)
    rows = await repository.history(session, participant_id, before=before, limit=limit + 1)
    return rows[:limit], len(rows) > limit


async def get(*, session: AsyncSession, who: Principal, participant_id: str, assessment_id: str) -> SelfAssessment:
    await _known(session, who, participant_id)
    row = await repository.get(session, participant_id, assessment_id)
    if row is None:
        raise NotFound(f"No self-assessment {assessment_id!r} of participant {participant_id!r}.")
    return row
