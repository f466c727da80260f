"""Every query of the registry. The registry is not on a hot path, so the ORM is used throughout."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import Select, and_, or_, select, text, union
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain import SMELTER_KINDS
from registry.models import (
    AsmPresence,
    CahraArea,
    Certification,
    CoexistenceAgreement,
    ComplianceOfficer,
    Credential,
    Invitation,
    OfficerCredential,
    Participant,
    Regulator,
    RegulatorGrant,
    RiskProfile,
)
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
    session: AsyncSession,
    *,
    kind: str | None,
    country: str | None,
    after: int,
    limit: int,
    only: Sequence[str] | None = None,
    directory_of: str | None = None,
    public: Sequence[str] = (),
    to_contacts: Sequence[str] = (),
) -> list[Participant]:
    """Oldest first. With `only`, those participants only. With `directory_of`, only that participant's directory:
    itself, every smelter and refiner, the participants whose policy is one of `public`, and its contacts whose
    policy is one of `to_contacts` (`domain.policies_disclosed_to`)."""
    stmt = select(Participant).where(Participant.seq > after).order_by(Participant.seq).limit(limit)
    if only is not None:
        stmt = stmt.where(Participant.id.in_(list(only)))
    if kind:
        stmt = stmt.where(Participant.kind == kind)
    if country:
        stmt = stmt.where(Participant.country == country)
    if directory_of is not None:
        stmt = stmt.where(
            or_(
                Participant.id == directory_of,
                Participant.kind.in_(list(SMELTER_KINDS)),
                Participant.disclosure.in_(list(public)),
                and_(Participant.disclosure.in_(list(to_contacts)), Participant.id.in_(_contacts_sql(directory_of))),
            )
        )
    return list(await session.scalars(stmt))


# --- the directory: contacts (invitations) and exact identifiers ------------------------------------------------

LOOKUP_IDENTIFIERS = ("rmi_smelter_id", "lei", "gln")


def _contacts_sql(participant_id: str) -> Select[tuple[str]]:
    """The ids of the participants the operator introduced `participant_id` to, either way."""
    return union(
        select(Invitation.invitee_id).where(Invitation.participant_id == participant_id),
        select(Invitation.participant_id).where(Invitation.invitee_id == participant_id),
    )  # type: ignore[return-value]


async def contacts_among(session: AsyncSession, participant_id: str, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are contacts of `participant_id`."""
    if not ids:
        return set()
    sub = _contacts_sql(participant_id).subquery()
    return set(await session.scalars(select(sub.c[0]).where(sub.c[0].in_(list(ids)))))


async def participants_by_identifier(session: AsyncSession, name: str, value: str, limit: int) -> list[Participant]:
    """The participants with exactly this identifier (`name`: one of LOOKUP_IDENTIFIERS), oldest first."""
    if name not in LOOKUP_IDENTIFIERS:
        raise ValueError(name)
    column = Participant.rmi_smelter_id if name == "rmi_smelter_id" else Participant.identifiers[name].astext
    stmt = select(Participant).where(column == value).order_by(Participant.seq).limit(limit)
    return list(await session.scalars(stmt))


async def invitation_between(session: AsyncSession, a: str, b: str) -> Invitation | None:
    """An invitation of `a` to `b` or of `b` to `a`."""
    stmt = select(Invitation).where(
        or_(
            and_(Invitation.participant_id == a, Invitation.invitee_id == b),
            and_(Invitation.participant_id == b, Invitation.invitee_id == a),
        )
    )
    return await session.scalar(stmt.limit(1))


async def list_invitations(session: AsyncSession, *, of: str | None, after: int, limit: int) -> list[Invitation]:
    """Oldest first: every invitation, or (`of`) those naming that participant on either side."""
    stmt = select(Invitation).where(Invitation.seq > after).order_by(Invitation.seq).limit(limit)
    if of is not None:
        stmt = stmt.where(or_(Invitation.participant_id == of, Invitation.invitee_id == of))
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


RISK_PROFILES_LOCK = 0x52_49_53_4B  # "RISK": the transaction-scoped advisory lock risk-profile writes take turns on


async def lock_risk_profiles(session: AsyncSession) -> None:
    """Until the transaction ends: batches and imports of risk profiles take turns (none records a row twice)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RISK_PROFILES_LOCK})


async def get_risk_profile(session: AsyncSession, profile_id: str, *, for_update: bool = False) -> RiskProfile:
    stmt = select(RiskProfile).where(RiskProfile.id == profile_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No risk profile {profile_id!r}.")
    return row


async def risk_profiles_in(session: AsyncSession, countries: Sequence[str]) -> list[RiskProfile]:
    """Every profile of these countries (whole-country and regional)."""
    return list(await session.scalars(select(RiskProfile).where(RiskProfile.country.in_(list(countries)))))


async def list_risk_profiles(
    session: AsyncSession,
    *,
    country: str | None,
    region: str | None,
    factor: str | None,
    as_of: date | None,
    after: int,
    limit: int,
) -> list[RiskProfile]:
    """Oldest first. With `region`: what applies there, its own rows and its country's whole-country rows."""
    stmt = select(RiskProfile).where(RiskProfile.seq > after).order_by(RiskProfile.seq).limit(limit)
    if country:
        stmt = stmt.where(RiskProfile.country == country)
    if region:
        stmt = stmt.where(or_(RiskProfile.region == region, RiskProfile.region.is_(None)))
    if factor:
        stmt = stmt.where(RiskProfile.factor == factor)
    if as_of:
        stmt = stmt.where(
            RiskProfile.effective_from <= as_of,
            or_(RiskProfile.effective_to.is_(None), RiskProfile.effective_to >= as_of),
        )
    return list(await session.scalars(stmt))


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


# --- ASM on or next to industrial titles, coexistence agreements ------------------------------------------------


async def participants_by_id(session: AsyncSession, ids: Sequence[str]) -> dict[str, Participant]:
    rows = await session.scalars(select(Participant).where(Participant.id.in_(list(ids))))
    return {p.id: p for p in rows}


async def get_asm_presence(session: AsyncSession, presence_id: str, *, for_update: bool = False) -> AsmPresence:
    stmt = select(AsmPresence).where(AsmPresence.id == presence_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No ASM presence {presence_id!r}.")
    return row


async def asm_presence_of(session: AsyncSession, titleholder: str) -> list[AsmPresence]:
    stmt = select(AsmPresence).where(AsmPresence.titleholder == titleholder).order_by(AsmPresence.seq)
    return list(await session.scalars(stmt))


async def get_agreement(session: AsyncSession, agreement_id: str, *, for_update: bool = False) -> CoexistenceAgreement:
    stmt = select(CoexistenceAgreement).where(CoexistenceAgreement.id == agreement_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No coexistence agreement {agreement_id!r}.")
    return row


async def agreements_of(session: AsyncSession, titleholder: str) -> list[CoexistenceAgreement]:
    stmt = (
        select(CoexistenceAgreement)
        .where(CoexistenceAgreement.titleholder == titleholder)
        .order_by(CoexistenceAgreement.seq)
    )
    return list(await session.scalars(stmt))


# --- regulators -----------------------------------------------------------------------------------------------------


async def get_regulator(session: AsyncSession, regulator_id: str) -> Regulator:
    row = await session.scalar(select(Regulator).where(Regulator.id == regulator_id))
    if row is None:
        raise NotFound(f"No regulator {regulator_id!r}.")
    return row


async def list_regulators(session: AsyncSession) -> list[Regulator]:
    return list(await session.scalars(select(Regulator).order_by(Regulator.seq)))


async def grants_of(session: AsyncSession, regulator_id: str) -> list[RegulatorGrant]:
    stmt = select(RegulatorGrant).where(RegulatorGrant.regulator_id == regulator_id).order_by(RegulatorGrant.seq)
    return list(await session.scalars(stmt))


async def get_grant(session: AsyncSession, regulator_id: str, grant_id: str) -> RegulatorGrant:
    stmt = (
        select(RegulatorGrant)
        .where(RegulatorGrant.id == grant_id, RegulatorGrant.regulator_id == regulator_id)
        .with_for_update()
    )
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"No grant {grant_id!r} of regulator {regulator_id!r}.")
    return row
