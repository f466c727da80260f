"""The registry's HTTP layer: parse, call the service, shape the response. One commit per request."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from registry import credentials, repository, schemas, service
from registry.config import Settings
from registry.domain import Kind, RiskFactor
from registry.models import ComplianceOfficer, OfficerCredential, Regulator, RegulatorGrant
from registry.models import Credential as CredentialRow
from registry.sessions import SessionDep
from shared.auth import OperatorDep, Principal, PrincipalDep
from shared.limits import GUARDED_RESPONSES, WriteBuckets, too_many
from shared.problems import Forbidden, InvalidInput, problem_responses, seq_cursor

router = APIRouter(responses=problem_responses(401, 403, 422, 503))


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]
NOT_FOUND = problem_responses(404)


def _credential(token: str, cred: CredentialRow) -> schemas.Credential:
    return schemas.Credential(
        token=token, token_id=cred.jti, participant_id=cred.participant_id, expires_at=cred.expires_at
    )


def _info(c: CredentialRow) -> schemas.CredentialInfo:
    return schemas.CredentialInfo(
        token_id=c.jti,
        participant_id=c.participant_id,
        issued_at=c.issued_at,
        expires_at=c.expires_at,
        revoked_at=c.revoked_at,
        revoked_reason=c.revoked_reason,
    )


# --- participants -------------------------------------------------------------------------------------------


@router.post(
    "/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.ParticipantRegistered,
    tags=["participants"],
    summary="Register a participant (operator); returns its first token, once",
    responses=problem_responses(409),
)
async def register_participant(
    body: schemas.ParticipantCreate, session: SessionDep, settings: SettingsDep, _: OperatorDep
) -> schemas.ParticipantRegistered:
    p, token, cred = await service.register_participant(
        session=session, body=body, token_ttl=timedelta(days=settings.token_ttl_days)
    )
    return schemas.ParticipantRegistered(
        participant=schemas.Participant.model_validate(p), credential=_credential(token, cred)
    )


@router.get(
    "/participants",
    response_model=schemas.ParticipantPage,
    tags=["participants"],
    summary="List participants, oldest first, filtered by kind and country: everyone for the operator and compliance "
    "officers; for a participant its directory (itself in full; cards of smelters and refiners, of participants whose "
    "policy is public, of its contacts); for a regulator the participants its grant names",
)
async def list_participants(
    session: SessionDep,
    who: PrincipalDep,
    kind: Kind | None = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.ParticipantPage:
    rows = await service.directory(
        session=session,
        who=who,
        kind=kind.value if kind else None,
        country=country.upper() if country else None,
        after=seq_cursor(cursor) or 0,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return schemas.ParticipantPage(items=[e for _, e in rows], next_cursor=str(rows[-1][0]) if more else None)


# --- the directory: exact-identifier lookup, disclosure policies, invitations ------------------------------------
# Declared before `/participants/{participant_id}`, which would take `lookup` for an id.


def _lookup_limit(request: Request, who: PrincipalDep) -> Principal:
    """Lookups per principal: `lookup_burst` at once, then `lookup_rate_per_hour` (the operator is not limited): a
    429 with Retry-After past that, so identifiers cannot be tried in bulk."""
    if who.is_operator:
        return who
    settings: Settings = request.app.state.settings
    buckets = getattr(request.app.state, "lookup_buckets", None)
    if buckets is None:
        buckets = request.app.state.lookup_buckets = WriteBuckets(
            settings.lookup_rate_per_hour / 3600, settings.lookup_burst
        )
    wait = buckets.take(who.subject)
    if wait > 0:
        raise too_many(
            settings.service_name,
            wait,
            f"Too many lookups: {settings.lookup_rate_per_hour:g} an hour, "
            f"with bursts of up to {settings.lookup_burst}",
        )
    return who


_LOOKUP_RESPONSES = {
    **problem_responses(404),
    429: {**GUARDED_RESPONSES["429"], "description": "Too many lookups: over the caller's lookup rate"},
}


@router.get(
    "/participants/lookup",
    response_model=schemas.LookupResult,
    tags=["directory"],
    summary="Find a participant by one exact identifier (RMI facility id, LEI or GLN): its card, unless its policy is "
    "`operator` (then 404, as for an identifier nobody has); rate-limited per caller",
    responses=_LOOKUP_RESPONSES,
)
async def lookup_participant(
    session: SessionDep,
    who: Annotated[Principal, Depends(_lookup_limit)],
    rmi_smelter_id: Annotated[str | None, Query(pattern=r"^CID\d{6}$", description="RMI facility id")] = None,
    lei: Annotated[str | None, Query(pattern=r"^[A-Z0-9]{18}[0-9]{2}$", description="Legal Entity Identifier")] = None,
    gln: Annotated[str | None, Query(pattern=r"^\d{13}$", description="GS1 Global Location Number")] = None,
) -> schemas.LookupResult:
    given = [(n, v) for n, v in (("rmi_smelter_id", rmi_smelter_id), ("lei", lei), ("gln", gln)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("query", "give exactly one of rmi_smelter_id, lei, gln (lookups are by exact identifier)")
    name, value = given[0]
    return schemas.LookupResult(items=await service.lookup(session=session, who=who, name=name, value=value))


@router.put(
    "/participants/{participant_id}/disclosure",
    response_model=schemas.Participant,
    tags=["directory"],
    summary="Change a participant's disclosure policy (the participant itself, or the operator); published as "
    "registry.participant.updated. Smelters and refiners are public by nature (422 for any other policy)",
    responses=NOT_FOUND,
)
async def set_disclosure(
    participant_id: str, body: schemas.DisclosureChange, session: SessionDep, who: PrincipalDep
) -> schemas.Participant:
    p = await service.set_disclosure(
        session=session, who=who, participant_id=participant_id, disclosure=body.disclosure
    )
    return schemas.Participant.model_validate(p)


@router.post(
    "/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Invitation,
    tags=["directory"],
    summary="Introduce two participants to each other (operator): each finds the other in its directory, as the "
    "other's policy allows for a counterparty",
    responses=problem_responses(409),
)
async def invite(body: schemas.InvitationCreate, session: SessionDep, _: OperatorDep) -> schemas.Invitation:
    return await service.invite(session=session, body=body)


@router.get(
    "/invitations",
    response_model=schemas.InvitationPage,
    tags=["directory"],
    summary="Invitations, oldest first: all of them (operator), or those naming you (a participant)",
)
async def list_invitations(
    session: SessionDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.InvitationPage:
    rows = await service.invitations(session=session, who=who, after=seq_cursor(cursor) or 0, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return schemas.InvitationPage(items=[i for _, i in rows], next_cursor=str(rows[-1][0]) if more else None)


@router.get(
    "/participants/{participant_id}",
    response_model=schemas.DirectoryEntry,
    tags=["participants"],
    summary="One participant: yourself in full, another as your directory shows it (else 404, as for an unknown id); "
    "the operator and compliance officers: anyone in full; a regulator: the participants its grant names",
    responses=NOT_FOUND,
)
async def get_participant(
    participant_id: str, session: SessionDep, who: PrincipalDep
) -> schemas.Participant | schemas.ParticipantCard:
    return await service.read_participant(session=session, who=who, participant_id=participant_id)


@router.patch(
    "/participants/{participant_id}",
    response_model=schemas.Participant,
    tags=["participants"],
    summary="Correct a participant (operator)",
    responses=NOT_FOUND,
)
async def update_participant(
    participant_id: str, body: schemas.ParticipantPatch, session: SessionDep, _: OperatorDep
) -> schemas.Participant:
    p = await service.update_participant(session=session, participant_id=participant_id, body=body)
    return schemas.Participant.model_validate(p)


# --- certifications ------------------------------------------------------------------------------------------


@router.post(
    "/participants/{participant_id}/certifications",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Certification,
    tags=["certifications"],
    summary="Record a certification, audit status or assessment level (operator)",
    responses=NOT_FOUND,
)
async def add_certification(
    participant_id: str, body: schemas.CertificationCreate, session: SessionDep, _: OperatorDep
) -> schemas.Certification:
    c = await service.add_certification(session=session, participant_id=participant_id, body=body)
    return schemas.Certification.model_validate(c)


@router.get(
    "/participants/{participant_id}/certifications",
    response_model=schemas.CertificationList,
    tags=["certifications"],
    responses=NOT_FOUND,
    summary="Certification history, or with `as_of` what the participant held on that day",
)
async def list_certifications(
    participant_id: str, session: SessionDep, _: PrincipalDep, as_of: date | None = None
) -> schemas.CertificationList:
    rows = await service.certifications(session=session, participant_id=participant_id, as_of=as_of)
    return schemas.CertificationList(
        participant_id=participant_id, as_of=as_of, items=[schemas.Certification.model_validate(c) for c in rows]
    )


# --- credentials ---------------------------------------------------------------------------------------------


@router.post(
    "/participants/{participant_id}/credentials",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Credential,
    tags=["credentials"],
    responses=NOT_FOUND,
    summary="Issue another token for a participant (operator); shown once",
)
async def issue_credential(
    participant_id: str, session: SessionDep, settings: SettingsDep, _: OperatorDep
) -> schemas.Credential:
    token, cred = await service.issue_credential(
        session=session, participant_id=participant_id, token_ttl=timedelta(days=settings.token_ttl_days)
    )
    return _credential(token, cred)


@router.get(
    "/participants/{participant_id}/credentials",
    response_model=list[schemas.CredentialInfo],
    tags=["credentials"],
    responses=NOT_FOUND,
    summary="A participant's tokens, without the secrets (operator)",
)
async def list_credentials(participant_id: str, session: SessionDep, _: OperatorDep) -> list[schemas.CredentialInfo]:
    await repository.get_participant(session, participant_id)
    return [_info(c) for c in await repository.credentials_of(session, participant_id)]


@router.post(
    "/credentials/{token_id}/revoke",
    response_model=schemas.CredentialInfo,
    tags=["credentials"],
    responses=problem_responses(404, 409),
    summary="Revoke a token (operator); every service refuses it within AUTH_REFRESH_S seconds",
)
async def revoke_credential(
    token_id: str, session: SessionDep, request: Request, _: OperatorDep, body: schemas.Revoke | None = None
) -> schemas.CredentialInfo:
    cred = await service.revoke_credential(session=session, token_id=token_id, reason=body.reason if body else None)
    request.app.state.runtime.verifier.revoke(cred.jti)
    return _info(cred)


@router.get(
    "/credentials/revoked",
    response_model=schemas.RevocationList,
    tags=["credentials"],
    summary="Revoked tokens not yet expired (public; services poll it)",
)
async def list_revoked_credentials(session: SessionDep) -> schemas.RevocationList:
    rows = await credentials.revoked_ids(session)
    return schemas.RevocationList(
        generated_at=datetime.now(UTC),
        revoked=[
            schemas.RevokedToken(token_id=c.jti, expires_at=c.expires_at, revoked_at=c.revoked_at)
            for c in rows
            if c.revoked_at is not None
        ],
    )


# --- compliance officers -------------------------------------------------------------------------------------


def _scope(scope: list[str] | None) -> str | list[str]:
    return "all" if scope is None else list(scope)


def _officer(o: ComplianceOfficer) -> schemas.Officer:
    return schemas.Officer(id=o.id, name=o.name, contact=o.contact, scope=_scope(o.scope), created_at=o.created_at)


def _officer_credential(token: str, c: OfficerCredential) -> schemas.OfficerCredential:
    return schemas.OfficerCredential(
        token=token, token_id=c.jti, officer_id=c.officer_id, scope=_scope(c.scope), expires_at=c.expires_at
    )


def _officer_info(c: OfficerCredential) -> schemas.OfficerCredentialInfo:
    return schemas.OfficerCredentialInfo(
        token_id=c.jti,
        officer_id=c.officer_id,
        scope=_scope(c.scope),
        issued_at=c.issued_at,
        expires_at=c.expires_at,
        revoked_at=c.revoked_at,
        revoked_reason=c.revoked_reason,
    )


@router.post(
    "/officers",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.OfficerRegistered,
    tags=["officers"],
    summary="Register a compliance officer, who resolves flags in audit (operator); returns a first token, once",
)
async def register_officer(
    body: schemas.OfficerCreate, session: SessionDep, settings: SettingsDep, _: OperatorDep
) -> schemas.OfficerRegistered:
    officer, token, cred = await service.register_officer(
        session=session, body=body, token_ttl=timedelta(days=settings.token_ttl_days)
    )
    return schemas.OfficerRegistered(officer=_officer(officer), credential=_officer_credential(token, cred))


@router.get(
    "/officers",
    response_model=schemas.OfficerList,
    tags=["officers"],
    summary="The compliance officers, oldest first (operator)",
)
async def list_officers(session: SessionDep, _: OperatorDep) -> schemas.OfficerList:
    return schemas.OfficerList(items=[_officer(o) for o in await repository.list_officers(session)])


@router.get(
    "/officers/{officer_id}",
    response_model=schemas.Officer,
    tags=["officers"],
    responses=NOT_FOUND,
    summary="One compliance officer (operator)",
)
async def get_officer(officer_id: str, session: SessionDep, _: OperatorDep) -> schemas.Officer:
    return _officer(await repository.get_officer(session, officer_id))


@router.post(
    "/officers/{officer_id}/credentials",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.OfficerCredential,
    tags=["officers"],
    responses=NOT_FOUND,
    summary="Issue another token for a compliance officer, with the officer's scope (operator); shown once",
)
async def issue_officer_credential(
    officer_id: str, session: SessionDep, settings: SettingsDep, _: OperatorDep
) -> schemas.OfficerCredential:
    token, cred = await service.issue_officer_credential(
        session=session, officer_id=officer_id, token_ttl=timedelta(days=settings.token_ttl_days)
    )
    return _officer_credential(token, cred)


@router.get(
    "/officers/{officer_id}/credentials",
    response_model=list[schemas.OfficerCredentialInfo],
    tags=["officers"],
    responses=NOT_FOUND,
    summary="A compliance officer's tokens, without the secrets (operator)",
)
async def list_officer_credentials(
    officer_id: str, session: SessionDep, _: OperatorDep
) -> list[schemas.OfficerCredentialInfo]:
    await repository.get_officer(session, officer_id)
    return [_officer_info(c) for c in await repository.officer_credentials(session, officer_id)]


@router.post(
    "/officers/{officer_id}/credentials/{token_id}/revoke",
    response_model=schemas.OfficerCredentialInfo,
    tags=["officers"],
    responses=problem_responses(404, 409),
    summary="Revoke a compliance officer's token (operator); every service refuses it, and audit ends its open "
    "/stream, within AUTH_REFRESH_S seconds",
)
async def revoke_officer_credential(
    officer_id: str,
    token_id: str,
    session: SessionDep,
    request: Request,
    _: OperatorDep,
    body: schemas.Revoke | None = None,
) -> schemas.OfficerCredentialInfo:
    cred = await service.revoke_officer_credential(
        session=session, officer_id=officer_id, token_id=token_id, reason=body.reason if body else None
    )
    request.app.state.runtime.verifier.revoke(cred.jti)
    return _officer_info(cred)


# --- CAHRA reference list ------------------------------------------------------------------------------------


@router.post(
    "/cahra",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Cahra,
    tags=["cahra"],
    summary="List a conflict-affected or high-risk area (operator)",
)
async def add_cahra_area(body: schemas.CahraCreate, session: SessionDep, _: OperatorDep) -> schemas.Cahra:
    return schemas.Cahra.model_validate(await service.add_cahra(session=session, body=body))


@router.patch(
    "/cahra/{area_id}",
    response_model=schemas.Cahra,
    tags=["cahra"],
    responses=NOT_FOUND,
    summary="Correct an area or end its listing with effective_to (operator)",
)
async def update_cahra_area(
    area_id: str, body: schemas.CahraPatch, session: SessionDep, _: OperatorDep
) -> schemas.Cahra:
    return schemas.Cahra.model_validate(await service.update_cahra(session=session, area_id=area_id, body=body))


@router.get(
    "/cahra",
    response_model=schemas.CahraList,
    tags=["cahra"],
    summary="The CAHRA list, all of its history or as it stood on `as_of`",
)
async def list_cahra_areas(
    session: SessionDep,
    _: PrincipalDep,
    as_of: date | None = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")] = None,
) -> schemas.CahraList:
    rows = await repository.cahra_areas(session, as_of=as_of, country=country.upper() if country else None)
    return schemas.CahraList(as_of=as_of, items=[schemas.Cahra.model_validate(a) for a in rows])


# --- country and region risk profiles ----------------------------------------------------------------------------


@router.post(
    "/risk-profiles",
    response_model=schemas.RiskProfilesRecorded,
    tags=["risk profiles"],
    summary="Record country or region risk profiles, up to 500, all or none (operator); sending the same again "
    "changes nothing",
)
async def record_profiles(
    body: schemas.RiskProfileBatch, session: SessionDep, _: OperatorDep
) -> schemas.RiskProfilesRecorded:
    where = [f"body.items.{i}" for i in range(len(body.items))]
    profiles = [service.check_risk_profile(p, w) for p, w in zip(body.items, where, strict=True)]
    rows, result = await service.record_risk_profiles(session=session, profiles=profiles, where=where)
    return schemas.RiskProfilesRecorded(
        items=[schemas.RiskProfile.model_validate(r) for r in rows],
        added=result.added,
        updated=result.updated,
        unchanged=result.unchanged,
    )


@router.patch(
    "/risk-profiles/{profile_id}",
    response_model=schemas.RiskProfile,
    tags=["risk profiles"],
    responses=NOT_FOUND,
    summary="Correct a risk profile's level, period or source, or end it with effective_to (operator)",
)
async def correct_profile(
    profile_id: str, body: schemas.RiskProfilePatch, session: SessionDep, _: OperatorDep
) -> schemas.RiskProfile:
    r = await service.update_risk_profile(session=session, profile_id=profile_id, body=body)
    return schemas.RiskProfile.model_validate(r)


@router.get(
    "/risk-profiles",
    response_model=schemas.RiskProfilePage,
    tags=["risk profiles"],
    summary="Country and region risk profiles, oldest first; with `region`, what applies there (its own and its "
    "country's whole-country profiles); with `as_of`, those in force that day",
)
async def list_profiles(
    session: SessionDep,
    _: PrincipalDep,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")] = None,
    region: Annotated[
        str | None, Query(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$", description="ISO 3166-2 subdivision")
    ] = None,
    factor: RiskFactor | None = None,
    as_of: date | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.RiskProfilePage:
    rows = await service.risk_profiles(
        session=session,
        country=country.upper() if country else None,
        region=region.upper() if region else None,
        factor=factor,
        as_of=as_of,
        after=seq_cursor(cursor) or 0,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return schemas.RiskProfilePage(
        as_of=as_of,
        items=[schemas.RiskProfile.model_validate(r) for r in rows],
        next_cursor=str(rows[-1].seq) if more else None,
    )


# --- ASM on or next to industrial titles, coexistence agreements (IRMA Standard chapter 3.6) ---------------------
# The operator records them; the titleholder (and an officer overseeing it) reads them all, an ASM group the ones that
# name it. A titleholder never records its own: the finding they bear on is about it.


def _reads_title(who: Principal, titleholder: str) -> bool:
    """Whether `who` reads everything recorded on this title (else only what names it, if a participant)."""
    if who.is_operator or who.subject == titleholder or who.oversees(titleholder):
        return True
    if not who.is_participant:
        raise Forbidden("Only the operator, the titleholder, its ASM groups and its officers read this.")
    return False


@router.post(
    "/participants/{participant_id}/asm-presence",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.AsmPresence,
    tags=["coexistence"],
    responses=NOT_FOUND,
    summary="Record artisanal miners (an ASM group) on or next to an industrial mine's title (operator)",
)
async def add_asm_presence(
    participant_id: str, body: schemas.AsmPresenceCreate, session: SessionDep, _: OperatorDep
) -> schemas.AsmPresence:
    a = await service.add_asm_presence(session=session, titleholder=participant_id, body=body)
    return schemas.AsmPresence.model_validate(a)


@router.get(
    "/participants/{participant_id}/asm-presence",
    response_model=schemas.AsmPresenceList,
    tags=["coexistence"],
    responses=NOT_FOUND,
    summary="ASM groups recorded on or next to a titleholder's title (operator, the titleholder; a group: its own)",
)
async def list_asm_presence(participant_id: str, session: SessionDep, who: PrincipalDep) -> schemas.AsmPresenceList:
    everything = _reads_title(who, participant_id)
    await repository.get_participant(session, participant_id)
    rows = await repository.asm_presence_of(session, participant_id)
    return schemas.AsmPresenceList(
        titleholder=participant_id,
        items=[schemas.AsmPresence.model_validate(a) for a in rows if everything or a.asm_group == who.subject],
    )


@router.patch(
    "/asm-presence/{presence_id}",
    response_model=schemas.AsmPresence,
    tags=["coexistence"],
    responses=NOT_FOUND,
    summary="Correct an ASM presence, or end it with `until` (operator)",
)
async def update_asm_presence(
    presence_id: str, body: schemas.AsmPresencePatch, session: SessionDep, _: OperatorDep
) -> schemas.AsmPresence:
    a = await service.update_asm_presence(session=session, presence_id=presence_id, body=body)
    return schemas.AsmPresence.model_validate(a)


@router.post(
    "/participants/{participant_id}/coexistence-agreements",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.CoexistenceAgreement,
    tags=["coexistence"],
    responses=NOT_FOUND,
    summary="Record a coexistence agreement between an industrial titleholder and ASM groups (operator)",
)
async def add_coexistence_agreement(
    participant_id: str, body: schemas.CoexistenceAgreementCreate, session: SessionDep, _: OperatorDep
) -> schemas.CoexistenceAgreement:
    a = await service.add_agreement(session=session, titleholder=participant_id, body=body)
    return schemas.CoexistenceAgreement.model_validate(a)


@router.get(
    "/participants/{participant_id}/coexistence-agreements",
    response_model=schemas.CoexistenceAgreementList,
    tags=["coexistence"],
    responses=NOT_FOUND,
    summary="A titleholder's coexistence agreements (operator, the titleholder; an ASM group: those it is party to)",
)
async def list_coexistence_agreements(
    participant_id: str, session: SessionDep, who: PrincipalDep
) -> schemas.CoexistenceAgreementList:
    everything = _reads_title(who, participant_id)
    await repository.get_participant(session, participant_id)
    rows = await repository.agreements_of(session, participant_id)
    return schemas.CoexistenceAgreementList(
        titleholder=participant_id,
        items=[
            schemas.CoexistenceAgreement.model_validate(a) for a in rows if everything or who.subject in a.asm_groups
        ],
    )


@router.patch(
    "/coexistence-agreements/{agreement_id}",
    response_model=schemas.CoexistenceAgreement,
    tags=["coexistence"],
    responses=NOT_FOUND,
    summary="Change a coexistence agreement: its status, dates or parties (operator)",
)
async def update_coexistence_agreement(
    agreement_id: str, body: schemas.CoexistenceAgreementPatch, session: SessionDep, _: OperatorDep
) -> schemas.CoexistenceAgreement:
    a = await service.update_agreement(session=session, agreement_id=agreement_id, body=body)
    return schemas.CoexistenceAgreement.model_validate(a)


# --- regulators ---------------------------------------------------------------------------------------------------
# The operator registers regulators and grants each read access to lots and participants for a period; the grant's
# token (shown once) expires with it. A regulator writes nothing anywhere.


def _grant_credential(token: str, g: RegulatorGrant) -> schemas.RegulatorCredential:
    return schemas.RegulatorCredential(
        token=token, token_id=g.jti, regulator_id=g.regulator_id, not_before=g.valid_from, expires_at=g.valid_until
    )


def _regulator(r: Regulator) -> schemas.Regulator:
    return schemas.Regulator.model_validate(r)


@router.post(
    "/regulators",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Regulator,
    tags=["regulators"],
    summary="Register a regulator (operator); it reads only through grants (POST /regulators/{id}/grants)",
)
async def register_regulator(body: schemas.RegulatorCreate, session: SessionDep, _: OperatorDep) -> schemas.Regulator:
    return _regulator(await service.register_regulator(session=session, body=body))


@router.get(
    "/regulators", response_model=schemas.RegulatorList, tags=["regulators"], summary="The regulators (operator)"
)
async def list_regulators(session: SessionDep, _: OperatorDep) -> schemas.RegulatorList:
    return schemas.RegulatorList(items=[_regulator(r) for r in await repository.list_regulators(session)])


@router.get(
    "/regulators/{regulator_id}",
    response_model=schemas.Regulator,
    tags=["regulators"],
    responses=NOT_FOUND,
    summary="One regulator (operator)",
)
async def get_regulator(regulator_id: str, session: SessionDep, _: OperatorDep) -> schemas.Regulator:
    return _regulator(await repository.get_regulator(session, regulator_id))


@router.post(
    "/regulators/{regulator_id}/grants",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.GrantIssued,
    tags=["regulators"],
    responses=NOT_FOUND,
    summary="Grant a regulator read access to lots and participants for a period (operator); returns the grant's "
    "token, once, valid from valid_from to valid_until",
)
async def grant_access(
    regulator_id: str, body: schemas.GrantCreate, session: SessionDep, _: OperatorDep
) -> schemas.GrantIssued:
    g, _regulator_row, token = await service.grant_access(session=session, regulator_id=regulator_id, body=body)
    return schemas.GrantIssued(grant=schemas.Grant.model_validate(g), credential=_grant_credential(token, g))


@router.get(
    "/regulators/{regulator_id}/grants",
    response_model=schemas.GrantList,
    tags=["regulators"],
    responses=NOT_FOUND,
    summary="A regulator's grants, oldest first, without their tokens (operator)",
)
async def list_grants(regulator_id: str, session: SessionDep, _: OperatorDep) -> schemas.GrantList:
    await repository.get_regulator(session, regulator_id)
    rows = await repository.grants_of(session, regulator_id)
    return schemas.GrantList(regulator_id=regulator_id, items=[schemas.Grant.model_validate(g) for g in rows])


@router.post(
    "/regulators/{regulator_id}/grants/{grant_id}/revoke",
    response_model=schemas.Grant,
    tags=["regulators"],
    responses=problem_responses(404, 409),
    summary="Revoke a grant (operator); every service refuses its token within AUTH_REFRESH_S seconds",
)
async def revoke_grant(
    regulator_id: str,
    grant_id: str,
    session: SessionDep,
    request: Request,
    _: OperatorDep,
    body: schemas.Revoke | None = None,
) -> schemas.Grant:
    g = await service.revoke_grant(
        session=session, regulator_id=regulator_id, grant_id=grant_id, reason=body.reason if body else None
    )
    request.app.state.runtime.verifier.revoke(g.jti)
    return schemas.Grant.model_validate(g)
