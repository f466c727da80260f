"""Audit's self-assessment endpoint: a participant's latest due-diligence self-assessment scores and their trend, for
its buyers, the operator, its compliance officers and itself. Parse, call the use case
(`audit/assessments_service.py`), shape the response. No SQL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from audit import assessments_schemas as schemas
from audit import assessments_service as service
from shared.auth import PrincipalDep
from shared.problems import problem_responses

router = APIRouter(tags=["self-assessment"], responses=problem_responses(401, 404, 503))


def _pool(request: Request) -> service.Pool:
    return request.app.state.runtime.pool  # type: ignore[no-any-return]


PoolDep = Annotated[service.Pool, Depends(_pool)]


@router.get(
    "/participants/{participant_id}/self-assessment",
    response_model=schemas.SelfAssessmentView,
    summary="A participant's latest due-diligence self-assessment (score per OECD step, total) and the trend of its "
    "last eight totals: for its buyers (anyone who received a shipment from it), itself, the operator and its "
    "compliance officers; anyone else: 404, as for an unknown participant",
)
async def latest_self_assessment(participant_id: str, pool: PoolDep, who: PrincipalDep) -> schemas.SelfAssessmentView:
    return await service.view(pool=pool, who=who, participant_id=participant_id)
