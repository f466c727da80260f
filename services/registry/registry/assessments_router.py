"""The self-assessment endpoints: the questionnaire, submitting one (the participant itself, or the operator on its
behalf), its history and one in full (the participant, the operator, its officers). Parse, call the use case
(`registry/assessments_service.py`), shape the response. One commit per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from registry import assessments_schemas as schemas
from registry import assessments_service as service
from registry.sessions import SessionDep
from shared.auth import PrincipalDep
from shared.problems import problem_responses, seq_cursor

router = APIRouter(tags=["self-assessment"], responses=problem_responses(401, 403, 422, 503))


NOT_FOUND = problem_responses(404)


@router.get(
    "/self-assessment/questionnaire",
    response_model=schemas.Questionnaire,
    summary="The due-diligence self-assessment questionnaire: the five OECD steps, the questions with their weights, "
    "and which answer the CMRT's company-level questions (anyone authenticated)",
)
async def get_questionnaire(_: PrincipalDep) -> schemas.Questionnaire:
    return service.questionnaire()


@router.post(
    "/participants/{participant_id}/self-assessments",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.SelfAssessment,
    responses=NOT_FOUND,
    summary="Submit a self-assessment (the participant itself, or the operator on its behalf): every required "
    "question answered; stored whole with its scores, published without comments or links",
)
async def submit_self_assessment(
    participant_id: str, body: schemas.SelfAssessmentCreate, session: SessionDep, who: PrincipalDep
) -> schemas.SelfAssessment:
    row = await service.submit(session=session, who=who, participant_id=participant_id, body=body)
    return service.full(row)


@router.get(
    "/participants/{participant_id}/self-assessments",
    response_model=schemas.SelfAssessmentPage,
    responses=NOT_FOUND,
    summary="A participant's self-assessments, newest first: scores per step and total (the participant, the "
    "operator, its compliance officers; anyone else: 404)",
)
async def list_self_assessments(
    participant_id: str,
    session: SessionDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.SelfAssessmentPage:
    rows, more = await service.history(
        session=session, who=who, participant_id=participant_id, before=seq_cursor(cursor), limit=limit
    )
    return schemas.SelfAssessmentPage(
        items=[service.summary(r) for r in rows], next_cursor=str(rows[-1].seq) if more else None
    )


@router.get(
    "/participants/{participant_id}/self-assessments/{assessment_id}",
    response_model=schemas.SelfAssessment,
    responses=NOT_FOUND,
    summary="One self-assessment in full, with its answers, comments and evidence links (the participant, the "
    "operator, its compliance officers; anyone else: 404)",
)
async def get_self_assessment(
    participant_id: str, assessment_id: str, session: SessionDep, who: PrincipalDep
) -> schemas.SelfAssessment:
    row = await service.get(session=session, who=who, participant_id=participant_id, assessment_id=assessment_id)
    return service.full(row)
