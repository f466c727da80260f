"""Audit's view of a participant's due-diligence self-assessment: the latest scores, the total and the trend, for the
operator, the compliance officers overseeing it, the participant itself and its buyers (anyone who received a
shipment from it). Anyone else reads a participant that does not exist (404, no oracle)."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeAlias

import asyncpg
import orjson

from audit import assessments_repository as repository
from audit import assessments_schemas as schemas
from audit.assessments_domain import TREND_LENGTH, Submission, trend
from shared.auth import Principal
from shared.problems import NotFound

Pool: TypeAlias = asyncpg.Pool  # what the router hands over (it imports no driver itself)


def _float(v: Decimal | None) -> float | None:
    return None if v is None else float(v)


async def view(*, pool: Pool, who: Principal, participant_id: str) -> schemas.SelfAssessmentView:
    unknown = NotFound(f"No participant {participant_id!r}.")
    async with pool.acquire() as conn:
        if not await repository.participant_known(conn, participant_id):
            raise unknown
        allowed = who.is_operator or who.oversees(participant_id) or who.subject == participant_id
        if not allowed and who.is_participant:
            allowed = await repository.received_from(conn, participant_id, who.subject)
        if not allowed or not (who.is_participant or who.is_operator or who.is_officer):
            raise unknown
        rows = await repository.latest(conn, participant_id, TREND_LENGTH + 1)
    t = trend(
        [
            Submission(
                r["assessment_id"], r["submitted_at"], r["questionnaire_version"], orjson.loads(r["scores"]), r["total"]
            )
            for r in rows
        ]
    )
    latest = (
        schemas.Latest(
            assessment_id=t.latest.assessment_id,
            submitted_at=t.latest.submitted_at,
            questionnaire_version=t.latest.questionnaire_version,
            scores=schemas.StepScores.model_validate(t.latest.scores),
            total=float(t.latest.total),
        )
        if t.latest
        else None
    )
    return schemas.SelfAssessmentView(
        participant_id=participant_id,
        latest=latest,
        change_since_previous=_float(t.change),
        trend=[
            schemas.TrendPoint(
                assessment_id=p.assessment_id,
                submitted_at=p.submitted_at,
                total=float(p.total),
                change=_float(p.change),
            )
            for p in t.points
        ],
    )
