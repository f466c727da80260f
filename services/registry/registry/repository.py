"""Every query of the registry. The registry is not on a hot path, so the ORM is used throughout."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.models import CahraArea, Certification, ComplianceOfficer, Credential, OfficerCredential, Participant
from shared.problems import NotFound


async def get_participant(session: AsyncSession, participant_id: str, *, for_update: bool = False) -> Participant:
    stmt = select(Participant).where(Participant.id == participant_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No participant {participant_id!r}.")
    return row


async def participant_by_smelter_id(session: AsyncSession, rmi_smelter_id: str) -> Participant | None:
    return await session.scalar(select(Participant).where(Participant.rmi_smelter_id == rmi_smelter_id))


async def list_participants(
    session: AsyncSession, *, kind: str | None, country: str | None, after: int, limit: int
) -> list[Participant]:
    stmt = select(Participant).where(Participant.seq > after).order_by(Participant.seq).limit(limit)
    if kind:
        stmt = stmt.where(Participant.kind == kind)
    if country:
        stmt = stmt.where(Participant.country == country)
    return list(await session.scalars(stmt))


async def certifications(session: AsyncSession, participant_id: str) -> list[Certification]:
    stmt = select(Certification).where(Certification.participant_id == participant_id).order_by(Certification.seq)
    return list(await session.scalars(stmt))


async def get_credential(session: AsyncSession, jti: str, *, for_update: bool = False) -> Credential:
    stmt = select(Credential).where(Credential.jti == jti)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No credential {jti!r}.")
    return row


async def credentials_of(session: AsyncSession, participant_id: str) -> list[Credential]:
    stmt = select(Credential).where(Credential.participant_id == participant_id).order_by(Credential.issued_at)
    return list(await session.scalars(stmt))


async def get_cahra(session: AsyncSession, area_id: str, *, for_update: bool = False) -> CahraArea:
    stmt = select(CahraArea).where(CahraArea.id == area_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No CAHRA area {area_id!r}.")
    return row


async def cahra_areas(
    session: AsyncSession, *, as_of: date | None = None, country: str | None = None
) -> list[CahraArea]:
    stmt = select(CahraArea).order_by(CahraArea.country, CahraArea.region.nulls_first(), CahraArea.effective_from)
    if country:
        stmt = stmt.where(CahraArea.country == country)
    if as_of:
        stmt = stmt.where(
            CahraArea.effective_from <= as_of, or_(CahraArea.effective_to.is_(None), CahraArea.effective_to >= as_of)
        )
    return list(await session.scalars(stmt))


async def cahra_match(
    session: AsyncSession, *, country: str, region: str | None, effective_from: date, source: str
) -> CahraArea | None:
    """The area an import row describes, if it was imported before (same place, start and source)."""
    stmt = select(CahraArea).where(
        CahraArea.country == country,
        CahraArea.effective_from == effective_from,
        CahraArea.source == source,
        CahraArea.region.is_(None) if region is None else CahraArea.region == region,
    )
    return await session.scalar(stmt)


async def existing_participants(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    return set(await session.scalars(select(Participant.id).where(Participant.id.in_(list(ids)))))


async def get_officer(session: AsyncSession, officer_id: str) -> ComplianceOfficer:
    row = await session.scalar(select(ComplianceOfficer).where(ComplianceOfficer.id == officer_id))
    if row is None:
        raise NotFound(f"No compliance officer {officer_id!r}.")
    return row


async def list_officers(session: AsyncSession) -> list[ComplianceOfficer]:
    return list(await session.scalars(select(ComplianceOfficer).order_by(ComplianceOfficer.seq)))


async def officer_credentials(session: AsyncSession, officer_id: str) -> list[OfficerCredential]:
    stmt = (
        select(OfficerCredential)
        .where(OfficerCredential.officer_id == officer_id)
        .order_by(OfficerCredential.issued_at)
    )
    return list(await session.scalars(stmt))


async def get_officer_credential(session: AsyncSession, officer_id: str, jti: str) -> OfficerCredential:
    stmt = (
        select(OfficerCredential)
        .where(OfficerCredential.jti == jti, OfficerCredential.officer_id == officer_id)
        .with_for_update()
    )
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No credential {jti!r} of compliance officer {officer_id!r}.")
    return row
