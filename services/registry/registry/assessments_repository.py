"""The self-assessment queries (SQLAlchemy, on the request's session)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.assessments_models import SelfAssessment
from registry.models import Participant


async def participant(session: AsyncSession, participant_id: str) -> Participant | None:
    return await session.get(Participant, participant_id)


async def add(session: AsyncSession, row: SelfAssessment) -> SelfAssessment:
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def history(
    session: AsyncSession, participant_id: str, *, before: int | None, limit: int
) -> list[SelfAssessment]:
    """A participant's submissions, newest first, older than `before` (a `seq`) when given."""
    stmt = select(SelfAssessment).where(SelfAssessment.participant_id == participant_id)
    if before is not None:
        stmt = stmt.where(SelfAssessment.seq < before)
    return list(await session.scalars(stmt.order_by(SelfAssessment.seq.desc()).limit(limit)))


async def get(session: AsyncSession, participant_id: str, assessment_id: str) -> SelfAssessment | None:
    return await session.scalar(
        select(SelfAssessment).where(
            SelfAssessment.id == assessment_id, SelfAssessment.participant_id == participant_id
        )
    )
