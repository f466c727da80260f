"""Registry use cases: load, apply the domain rules, write rows and their events. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from registry import credentials, domain, repository, schemas
from registry.domain import DomainError, Kind
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
from shared.auth import MAX_OFFICER_SCOPE, OPERATOR, Principal
from shared.events import format_time, new_event
from shared.outbox import enqueue
from shared.problems import Conflict, Forbidden, InvalidInput, NotFound
from shared.topics import REGISTRY_EVENTS
from shared.visibility import identity_disclosed
from shared.vocab import Disclosure

SOURCE = "/registry"


def _invalid(exc: DomainError, prefix: str = "body") -> InvalidInput:
    return InvalidInput(f"{prefix}.{exc.where}", exc.msg)


def _not_null(changes: dict[str, Any], *names: str) -> None:
    """A correction may leave these fields out, never set them to null: a 422 naming the first that is."""
    for name in names:
        if name in changes and changes[name] is None:
            raise InvalidInput(f"body.{name}", "cannot be null")


async def _publish(session: AsyncSession, type: str, key: str, data: Any) -> None:
    await enqueue(session, REGISTRY_EVENTS, [new_event(type, source=SOURCE, key=key, data=data)])


def participant_data(p: Participant) -> dict[str, Any]:
    return schemas.Participant.model_validate(p).model_dump(mode="json")


async def _check_smelter_id_free(session: AsyncSession, smelter_id: str | None, participant_id: str | None) -> None:
    if smelter_id is None:
        return
    other = await repository.participant_by_smelter_id(session, smelter_id)
    if other is not None and other.id != participant_id:
        raise InvalidInput(
            "body.identifiers.rmi_smelter_id", f"{smelter_id} is already the smelter id of participant {other.id}"
        )


async def _check_mine_region(session: AsyncSession, kind: Kind, country: str, region: str | None) -> None:
    """A mine in a country with regions listed as CAHRAs today (the registry's CAHRA list) names its region: without
    it, audit could not tell whether its material comes from a listed region (`domain.check_mine_region`)."""
    if kind != Kind.mine or region is not None:
        return
    listed = await repository.cahra_areas(session, as_of=datetime.now(UTC).date(), country=country)
    try:
        domain.check_mine_region(kind=kind, country=country, region=region, listed_regions=[a.region for a in listed])
    except DomainError as exc:
        raise _invalid(exc) from exc


async def register_participant(
    *, session: AsyncSession, body: schemas.ParticipantCreate, token_ttl: timedelta
) -> tuple[Participant, str, Credential]:
    try:
        country, region = domain.check_participant(
            kind=body.kind,
            country=body.country,
            region=body.region,
            mining_type=body.mining_type,
            capacity=body.annual_capacity_kg,
            rmi_smelter_id=body.identifiers.rmi_smelter_id,
        )
        disclosure = domain.check_disclosure(body.kind, body.disclosure)
    except DomainError as exc:
        raise _invalid(exc) from exc
    await _check_mine_region(session, body.kind, country, region)
    await _check_smelter_id_free(session, body.identifiers.rmi_smelter_id, None)
    p = Participant(
        id=str(uuid.uuid4()),
        name=body.name,
        kind=body.kind.value,
        country=country,
        region=region,
        identifiers=body.identifiers.model_dump(exclude_none=True),
        rmi_smelter_id=body.identifiers.rmi_smelter_id,
        mining_type=body.mining_type.value if body.mining_type else None,
        annual_capacity_kg={m.value: kg for m, kg in body.annual_capacity_kg.items()},
        disclosure=disclosure.value,
    )
    session.add(p)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration took the smelter id first
        raise InvalidInput("body.identifiers.rmi_smelter_id", "this smelter id is already registered") from exc
    await session.refresh(p)
    token, cred = await credentials.issue(session, participant_id=p.id, kind=p.kind, ttl=token_ttl)
    await _publish(session, "registry.participant.registered", p.id, participant_data(p))
    await _publish(session, "registry.credential.issued", p.id, _credential_data(cred))
    await session.flush()
    return p, token, cred


async def update_participant(
    *, session: AsyncSession, participant_id: str, body: schemas.ParticipantPatch
) -> Participant:
    p = await repository.get_participant(session, participant_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return p
    before = participant_data(p)
    _not_null(changes, "disclosure")
    if "identifiers" in changes and body.identifiers is not None:
        identifiers = body.identifiers.model_dump(exclude_none=True)
    else:
        identifiers = dict(p.identifiers)
    smelter_id = identifiers.get("rmi_smelter_id")
    capacity = (
        body.annual_capacity_kg
        if body.annual_capacity_kg is not None
        else {domain.Mineral(m): kg for m, kg in p.annual_capacity_kg.items()}
    )
    mining_type = (
        body.mining_type if "mining_type" in changes else (domain.MiningType(p.mining_type) if p.mining_type else None)
    )
    country = changes.get("country") or p.country
    region = changes.get("region", p.region if "country" not in changes else None)
    try:
        country, region = domain.check_participant(
            kind=Kind(p.kind),
            country=country,
            region=region,
            mining_type=mining_type,
            capacity=capacity,
            rmi_smelter_id=smelter_id,
        )
        disclosure = domain.check_disclosure(p.kind, body.disclosure) if "disclosure" in changes else None
    except DomainError as exc:
        raise _invalid(exc) from exc
    await _check_mine_region(session, Kind(p.kind), country, region)
    await _check_smelter_id_free(session, smelter_id, p.id)
    if "name" in changes and body.name is not None:
        p.name = body.name
    p.country, p.region = country, region
    p.identifiers, p.rmi_smelter_id = identifiers, smelter_id
    p.mining_type = mining_type.value if mining_type else None
    p.annual_capacity_kg = {domain.Mineral(m).value: kg for m, kg in capacity.items()}
    if disclosure is not None:
        p.disclosure = disclosure.value
    p.version += 1
    p.updated_at = datetime.now(UTC)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise InvalidInput("body.identifiers.rmi_smelter_id", "this smelter id is already registered") from exc
    after = participant_data(p)
    changed = sorted(k for k in after if k not in ("version", "updated_at") and after[k] != before[k])
    await _publish(session, "registry.participant.updated", p.id, {**after, "changed": changed})
    return p


# --- disclosure policies and the directory ----------------------------------------------------------------------
# A participant reads itself in full and, of the others, the cards of its directory: every smelter and refiner,
# the participants whose policy is public, and its contacts (the operator introduced them) whose policy allows a
# counterparty to learn who they are. Anything else reads as a participant that does not exist (no oracle). The
# operator, compliance officers and regulators read everyone in full.

LOOKUP_MAX = 20


def reads_everything(who: Principal) -> bool:
    """The operator and compliance officers read every participant in full (a regulator: those its grant names)."""
    return who.is_operator or who.is_officer


def _unknown(participant_id: str) -> NotFound:
    """The one answer for a participant that does not exist and one the caller may not see."""
    return NotFound(f"No participant {participant_id!r}.")


def card(p: Participant, listed_as: str) -> schemas.ParticipantCard:
    return schemas.ParticipantCard(
        id=p.id,
        name=p.name,
        kind=Kind(p.kind),
        country=p.country,
        region=p.region,
        mining_type=domain.MiningType(p.mining_type) if p.mining_type else None,
        rmi_smelter_id=p.rmi_smelter_id if p.kind in domain.SMELTER_KINDS else None,
        listed_as=listed_as,  # type: ignore[arg-type]
    )


def entry(p: Participant, who: Principal, contacts: set[str]) -> schemas.Participant | schemas.ParticipantCard | None:
    """`p` as `who` may read it: in full, as a card, or not at all (None)."""
    if reads_everything(who) or p.id == who.subject:
        return schemas.Participant.model_validate(p)
    if not who.is_participant:  # a regulator: in full, only the participants its grant names
        return schemas.Participant.model_validate(p) if p.id in who.grant_participants else None
    why = domain.listed_as(p.kind, p.disclosure, p.id in contacts)
    return card(p, why) if why else None


async def directory(
    *, session: AsyncSession, who: Principal, kind: str | None, country: str | None, after: int, limit: int
) -> list[tuple[int, schemas.Participant | schemas.ParticipantCard]]:
    """A page of what `who` may list (`limit` rows at most), each with its `seq` (the cursor)."""
    mine = who.subject if who.is_participant else None
    rows = await repository.list_participants(
        session,
        kind=kind,
        country=country,
        after=after,
        limit=limit,
        only=None if reads_everything(who) or mine else sorted(who.grant_participants),
        directory_of=mine,
        public=domain.policies_disclosed_to("stranger"),
        to_contacts=domain.policies_disclosed_to("counterparty"),
    )
    contacts = await repository.contacts_among(session, mine, [r.id for r in rows]) if mine else set()
    out = []
    for r in rows:
        e = entry(r, who, contacts)
        if e is not None:  # the query and `entry` say the same: this never drops a row
            out.append((r.seq, e))
    return out


async def read_participant(
    *, session: AsyncSession, who: Principal, participant_id: str
) -> schemas.Participant | schemas.ParticipantCard:
    """One participant as `who` may read it; one it may not reads as one that does not exist."""
    p = (await repository.participants_by_id(session, [participant_id])).get(participant_id)
    if p is None:
        raise _unknown(participant_id)
    contacts = (
        await repository.contacts_among(session, who.subject, [p.id])
        if who.is_participant and p.id != who.subject
        else set()
    )
    e = entry(p, who, contacts)
    if e is None:
        raise _unknown(participant_id)
    return e


async def lookup(
    *, session: AsyncSession, who: Principal, name: str, value: str
) -> list[schemas.Participant | schemas.ParticipantCard]:
    """The participants with exactly this identifier that may be found by it: any whose policy is not `operator`
    (a caller finds itself, and the operator finds everyone). None: 404, as for an identifier nobody has."""
    found = []
    for p in await repository.participants_by_identifier(session, name, value, LOOKUP_MAX):
        e = entry(p, who, set())
        if e is None and who.is_participant and domain.findable(p.kind, p.disclosure):
            e = card(p, "found_by_identifier")
        if e is not None:
            found.append(e)
    if not found:
        raise NotFound(f"No participant with {name} {value!r}.")
    return found


async def set_disclosure(
    *, session: AsyncSession, who: Principal, participant_id: str, disclosure: Disclosure
) -> Participant:
    """A participant changes its own policy (the operator: anyone's), published as `registry.participant.updated`
    with `changed: ["disclosure"]` like any correction. Anyone else: 403 before anything is looked up, so the answer
    says nothing of whether the participant exists."""
    if not (who.is_operator or (who.is_participant and who.subject == participant_id)):
        raise Forbidden("Only the participant itself (and the operator) changes its disclosure policy.")
    return await update_participant(
        session=session, participant_id=participant_id, body=schemas.ParticipantPatch(disclosure=disclosure)
    )


def _invitation(i: Invitation, who: Principal, policies: dict[str, tuple[str, str]]) -> schemas.Invitation:
    """An invitation as `who` is shown it: to one of its participants, the other one's id only if its policy lets a
    counterparty learn who it is."""
    out = schemas.Invitation(
        id=i.id, participant_id=i.participant_id, invitee_id=i.invitee_id, note=i.note, created_at=i.created_at
    )
    if reads_everything(who):
        return out
    for field in ("participant_id", "invitee_id"):
        other = getattr(out, field)
        if other == who.subject:
            continue
        kind, policy = policies.get(other, (None, None))
        if not identity_disclosed(kind, policy, "counterparty"):
            setattr(out, field, None)
            out.withheld.append(field)
    return out


async def invite(*, session: AsyncSession, body: schemas.InvitationCreate) -> schemas.Invitation:
    """The operator introduces two participants to each other (once per pair, either way: 409 for another)."""
    if body.participant_id == body.invitee_id:
        raise InvalidInput("body.invitee_id", "a participant cannot be introduced to itself")
    found = await repository.participants_by_id(session, [body.participant_id, body.invitee_id])
    for field in ("participant_id", "invitee_id"):
        if getattr(body, field) not in found:
            raise InvalidInput(f"body.{field}", f"{getattr(body, field)!r} is not a registered participant")
    before = await repository.invitation_between(session, body.participant_id, body.invitee_id)
    if before is not None:
        raise Conflict(f"These participants were already introduced (invitation {before.id}).")
    i = Invitation(id=str(uuid.uuid4()), participant_id=body.participant_id, invitee_id=body.invitee_id, note=body.note)
    session.add(i)
    try:
        await session.flush()
    except IntegrityError as exc:  # the same invitation, sent at the same time
        raise Conflict("These participants were already introduced.") from exc
    await session.refresh(i)
    return _invitation(i, OPERATOR, {})


async def invitations(
    *, session: AsyncSession, who: Principal, after: int, limit: int
) -> list[tuple[int, schemas.Invitation]]:
    """The operator: every invitation; a participant: those naming it; anyone else: 403."""
    if not (who.is_operator or who.is_participant):
        raise Forbidden("Invitations are the operator's and the participants' they name.")
    rows = await repository.list_invitations(
        session, of=None if who.is_operator else who.subject, after=after, limit=limit
    )
    others = {x for i in rows for x in (i.participant_id, i.invitee_id)} - {who.subject}
    found = await repository.participants_by_id(session, sorted(others)) if who.is_participant and others else {}
    policies = {pid: (p.kind, p.disclosure) for pid, p in found.items()}
    return [(i.seq, _invitation(i, who, policies)) for i in rows]


async def add_certification(
    *, session: AsyncSession, participant_id: str, body: schemas.CertificationCreate
) -> Certification:
    p = await repository.get_participant(session, participant_id)
    try:
        field, value = domain.check_scheme_value(body.scheme, body.status, body.level)
        domain.check_period(body.valid_from, body.valid_until, "valid_from", "valid_until")
    except DomainError as exc:
        raise _invalid(exc) from exc
    c = Certification(
        id=str(uuid.uuid4()),
        participant_id=p.id,
        scheme=body.scheme.value,
        status=value if field == "status" else None,
        level=value if field == "level" else None,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        reference=body.reference,
    )
    session.add(c)
    await session.flush()
    await session.refresh(c)
    data = schemas.Certification.model_validate(c).model_dump(mode="json")
    await _publish(
        session,
        "registry.certification.changed",
        p.id,
        {**data, "participant_kind": p.kind, "participant_country": p.country},
    )
    return c


async def certifications(*, session: AsyncSession, participant_id: str, as_of: date | None) -> list[Certification]:
    await repository.get_participant(session, participant_id)
    rows = await repository.certifications(session, participant_id)
    if as_of is None:
        return rows
    by_seq = {c.seq: c for c in rows}
    facts = [
        domain.CertificationFact(domain.Scheme(c.scheme), c.status or c.level or "", c.valid_from, c.valid_until, c.seq)
        for c in rows
    ]
    return [by_seq[f.recorded_seq] for f in domain.certifications_as_of(facts, as_of)]


def _credential_data(c: Credential) -> dict[str, Any]:
    return {
        "participant_id": c.participant_id,
        "token_id": c.jti,
        "issued_at": format_time(c.issued_at),
        "expires_at": format_time(c.expires_at),
        "revoked_at": format_time(c.revoked_at) if c.revoked_at else None,
        "revoked_reason": c.revoked_reason,
    }


async def issue_credential(
    *, session: AsyncSession, participant_id: str, token_ttl: timedelta
) -> tuple[str, Credential]:
    p = await repository.get_participant(session, participant_id)
    token, cred = await credentials.issue(session, participant_id=p.id, kind=p.kind, ttl=token_ttl)
    await session.flush()
    await _publish(session, "registry.credential.issued", p.id, _credential_data(cred))
    return token, cred


async def revoke_credential(*, session: AsyncSession, token_id: str, reason: str | None) -> Credential:
    cred = await repository.get_credential(session, token_id, for_update=True)
    if cred.revoked_at is not None:
        raise Conflict(f"Credential {token_id} was already revoked at {cred.revoked_at.isoformat()}.")
    cred.revoked_at = datetime.now(UTC)
    cred.revoked_reason = reason
    await session.flush()
    await _publish(session, "registry.credential.revoked", cred.participant_id, _credential_data(cred))
    return cred


def cahra_data(a: CahraArea) -> dict[str, Any]:
    return schemas.Cahra.model_validate(a).model_dump(mode="json")


def _check_area(country: str, region: str | None, start: date, end: date | None, prefix: str) -> tuple[str, str | None]:
    try:
        country = domain.check_country(country)
        region = domain.check_region(region, country) if region else None
        domain.check_period(start, end, "effective_from", "effective_to")
    except DomainError as exc:
        raise _invalid(exc, prefix) from exc
    return country, region


async def add_cahra(*, session: AsyncSession, body: schemas.CahraCreate) -> CahraArea:
    country, region = _check_area(body.country, body.region, body.effective_from, body.effective_to, "body")
    a = CahraArea(
        id=str(uuid.uuid4()),
        country=country,
        region=region,
        name=body.name,
        conflict_affected=body.conflict_affected,
        high_risk=body.high_risk,
        effective_from=body.effective_from,
        effective_to=body.effective_to,
        source=body.source,
    )
    session.add(a)
    await session.flush()
    await session.refresh(a)
    await _publish(session, "registry.cahra.updated", a.country, {"action": "added", "area": cahra_data(a)})
    return a


async def update_cahra(*, session: AsyncSession, area_id: str, body: schemas.CahraPatch) -> CahraArea:
    a = await repository.get_cahra(session, area_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return a
    _not_null(changes, "effective_from", "source", "name", "conflict_affected", "high_risk")
    start = changes.get("effective_from", a.effective_from)
    end = changes.get("effective_to", a.effective_to)
    _check_area(a.country, a.region, start, end, "body")
    for name, value in changes.items():
        setattr(a, name, value)
    a.updated_at = datetime.now(UTC)
    await session.flush()
    await _publish(
        session,
        "registry.cahra.updated",
        a.country,
        {"action": "updated", "changed": sorted(changes), "area": cahra_data(a)},
    )
    return a


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


async def import_cahra(*, session: AsyncSession, areas: Iterable[domain.CahraArea]) -> ImportResult:
    """Add the areas not seen before (same place, start and source) and update the ones that changed."""
    result = ImportResult()
    for area in areas:
        existing = await repository.cahra_match(
            session, country=area.country, region=area.region, effective_from=area.effective_from, source=area.source
        )
        if existing is None:
            await add_cahra(
                session=session,
                body=schemas.CahraCreate(
                    country=area.country,
                    region=area.region,
                    name=area.name,
                    conflict_affected=area.conflict_affected,
                    high_risk=area.high_risk,
                    effective_from=area.effective_from,
                    effective_to=area.effective_to,
                    source=area.source,
                ),
            )
            result.added += 1
            continue
        patch = {
            k: v
            for k, v in {
                "name": area.name,
                "conflict_affected": area.conflict_affected,
                "high_risk": area.high_risk,
                "effective_to": area.effective_to,
            }.items()
            if getattr(existing, k) != v and not (k == "name" and v is None)  # a file without names keeps ours
        }
        if patch:
            await update_cahra(session=session, area_id=existing.id, body=schemas.CahraPatch(**patch))
            result.updated += 1
        else:
            result.unchanged += 1
    return result


# --- country and region risk profiles ----------------------------------------------------------------------------


def risk_profile_data(r: RiskProfile) -> dict[str, Any]:
    return schemas.RiskProfile.model_validate(r).model_dump(mode="json")


def check_risk_profile(body: schemas.RiskProfileCreate, prefix: str = "body") -> domain.RiskProfile:
    """A profile as sent, checked with the registry's ISO code checks: `prefix` names it in a problem."""
    try:
        country, region = domain.check_place(body.country, body.region)
        domain.check_period(body.effective_from, body.effective_to, "effective_from", "effective_to")
    except DomainError as exc:
        raise _invalid(exc, prefix) from exc
    return domain.RiskProfile(
        country, region, body.factor, body.level, body.effective_from, body.effective_to, body.source
    )


def _profile_key(p: domain.RiskProfile) -> tuple[str, str | None, str, date, str]:
    """What makes a row the same row: its place, factor, start and source."""
    return (p.country, p.region, p.factor.value, p.effective_from, p.source)


async def record_risk_profiles(
    *,
    session: AsyncSession,
    profiles: Sequence[domain.RiskProfile],
    where: Sequence[str] | None = None,
    progress: Callable[[int, domain.RiskProfile], None] | None = None,
) -> tuple[list[RiskProfile], ImportResult]:
    """Add the profiles not recorded before (same place, factor, start and source) and correct the level and end of
    those that differ; the same profile sent twice changes nothing. All in the caller's transaction, under a lock
    that makes concurrent batches (and imports) take turns, so none records a row twice. `where` names each profile
    in a problem (`body.items.3`); two of them with the same key are refused."""
    seen: dict[tuple[str, str | None, str, date, str], int] = {}
    for i, p in enumerate(profiles):
        key = _profile_key(p)
        if key in seen:
            at = where[i] if where else f"profiles.{i}"
            raise InvalidInput(at, f"the same place, factor, start and source as item {seen[key]}: send it once")
        seen[key] = i
    await repository.lock_risk_profiles(session)
    existing = {
        (r.country, r.region, r.factor, r.effective_from, r.source): r
        for r in await repository.risk_profiles_in(session, sorted({p.country for p in profiles}))
    }
    result = ImportResult()
    out: list[RiskProfile] = []
    for i, p in enumerate(profiles, 1):
        if progress is not None:
            progress(i, p)
        row = existing.get(_profile_key(p))
        if row is None:
            row = RiskProfile(
                id=str(uuid.uuid4()),
                country=p.country,
                region=p.region,
                factor=p.factor.value,
                level=p.level.value,
                effective_from=p.effective_from,
                effective_to=p.effective_to,
                source=p.source,
            )
            session.add(row)
            await session.flush()
            await session.refresh(row)
            existing[_profile_key(p)] = row
            data = {"action": "added", "profile": risk_profile_data(row)}
            await _publish(session, "registry.risk_profile.updated", row.country, data)
            result.added += 1
        else:
            patch = {
                k: v for k, v in (("level", p.level.value), ("effective_to", p.effective_to)) if getattr(row, k) != v
            }
            if patch:
                row = await update_risk_profile(
                    session=session, profile_id=row.id, body=schemas.RiskProfilePatch(**patch)
                )
                result.updated += 1
            else:
                result.unchanged += 1
        out.append(row)
    return out, result


async def risk_profiles(
    *,
    session: AsyncSession,
    country: str | None,
    region: str | None,
    factor: domain.RiskFactor | None,
    as_of: date | None,
    after: int,
    limit: int,
) -> list[RiskProfile]:
    """A page of profiles (`limit` rows at most); `region` alone implies its country, and must be in `country`."""
    try:
        if region:
            country, region = domain.check_place(country or region.split("-", 1)[0], region)
        elif country:
            country = domain.check_country(country)
    except DomainError as exc:
        raise _invalid(exc, "query") from exc
    return await repository.list_risk_profiles(
        session,
        country=country,
        region=region,
        factor=factor.value if factor else None,
        as_of=as_of,
        after=after,
        limit=limit,
    )


async def update_risk_profile(*, session: AsyncSession, profile_id: str, body: schemas.RiskProfilePatch) -> RiskProfile:
    """Correct a profile: its level, period or source (`effective_to` ends it). Published even when nothing given
    differs, as a CAHRA correction is (`changed` lists the fields given)."""
    r = await repository.get_risk_profile(session, profile_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return r
    _not_null(changes, "level", "effective_from", "source")
    start = changes.get("effective_from", r.effective_from)
    end = changes.get("effective_to", r.effective_to)
    try:
        domain.check_period(start, end, "effective_from", "effective_to")
    except DomainError as exc:
        raise _invalid(exc) from exc
    for name, value in changes.items():
        setattr(r, name, value.value if isinstance(value, domain.RiskLevel) else value)
    r.updated_at = datetime.now(UTC)
    await session.flush()
    await _publish(
        session,
        "registry.risk_profile.updated",
        r.country,
        {"action": "updated", "changed": sorted(changes), "profile": risk_profile_data(r)},
    )
    return r


# --- compliance officers ----------------------------------------------------------------------------------------
# Not published on registry.events: nothing downstream keeps officers; their tokens say who they are and what they
# oversee, and a revoked one reaches custody and audit through the revocation list like a participant's.


async def register_officer(
    *, session: AsyncSession, body: schemas.OfficerCreate, token_ttl: timedelta
) -> tuple[ComplianceOfficer, str, OfficerCredential]:
    requested = None if body.scope == "all" else list(body.scope)
    known = await repository.existing_participants(session, requested) if requested else set()
    try:
        scope = domain.check_officer_scope(requested, known, MAX_OFFICER_SCOPE)
    except DomainError as exc:
        raise _invalid(exc) from exc
    officer = ComplianceOfficer(id=str(uuid.uuid4()), name=body.name, contact=body.contact, scope=scope)
    session.add(officer)
    await session.flush()
    await session.refresh(officer)
    token, cred = await credentials.issue_officer(session, officer_id=officer.id, scope=scope, ttl=token_ttl)
    await session.flush()
    return officer, token, cred


async def issue_officer_credential(
    *, session: AsyncSession, officer_id: str, token_ttl: timedelta
) -> tuple[str, OfficerCredential]:
    officer = await repository.get_officer(session, officer_id)
    token, cred = await credentials.issue_officer(session, officer_id=officer.id, scope=officer.scope, ttl=token_ttl)
    await session.flush()
    return token, cred


async def revoke_officer_credential(
    *, session: AsyncSession, officer_id: str, token_id: str, reason: str | None
) -> OfficerCredential:
    cred = await repository.get_officer_credential(session, officer_id, token_id)
    if cred.revoked_at is not None:
        raise Conflict(f"Credential {token_id} was already revoked at {cred.revoked_at.isoformat()}.")
    cred.revoked_at = datetime.now(UTC)
    cred.revoked_reason = reason
    await session.flush()
    return cred


# --- ASM on or next to industrial titles, coexistence agreements (IRMA Standard chapter 3.6) ---------------------
# Recorded by the operator only: a finding's party never decides it (a titleholder could otherwise end its own
# `coexistence_without_agreement` by recording an agreement). A titleholder reads its own; an ASM group what names it.


def asm_presence_data(a: AsmPresence, action: str) -> dict[str, Any]:
    return {"action": action, **schemas.AsmPresence.model_validate(a).model_dump(mode="json")}


def agreement_data(a: CoexistenceAgreement, action: str) -> dict[str, Any]:
    return {"action": action, **schemas.CoexistenceAgreement.model_validate(a).model_dump(mode="json")}


async def _titleholder(session: AsyncSession, titleholder: str) -> Participant:
    p = await repository.get_participant(session, titleholder)
    try:
        domain.check_titleholder(p.kind, p.mining_type, "participant_id")
    except DomainError as exc:
        raise _invalid(exc, "path") from exc
    return p


async def _asm_groups(session: AsyncSession, ids: list[str], where: str) -> None:
    """Each id a registered ASM group (`where`: the field, `body.asm_groups` gets the index of the one refused)."""
    found = await repository.participants_by_id(session, ids)
    for i, gid in enumerate(ids):
        at = f"{where}.{i}" if where.endswith("asm_groups") else where
        g = found.get(gid)
        if g is None:
            raise InvalidInput(at, f"{gid!r} is not a registered participant")
        try:
            domain.check_asm_group(g.kind, g.mining_type, at)
        except DomainError as exc:
            raise InvalidInput(exc.where, exc.msg) from exc


async def add_asm_presence(*, session: AsyncSession, titleholder: str, body: schemas.AsmPresenceCreate) -> AsmPresence:
    p = await _titleholder(session, titleholder)
    if body.asm_group == p.id:
        raise InvalidInput("body.asm_group", "the titleholder cannot be its own ASM group")
    await _asm_groups(session, [body.asm_group], "body.asm_group")
    try:
        domain.check_period(body.since, body.until, "since", "until")
    except DomainError as exc:
        raise _invalid(exc) from exc
    a = AsmPresence(
        id=str(uuid.uuid4()),
        titleholder=p.id,
        asm_group=body.asm_group,
        relation=body.relation.value,
        since=body.since,
        until=body.until,
        source=body.source,
    )
    session.add(a)
    await session.flush()
    await session.refresh(a)
    await _publish(session, "registry.asm_presence.changed", a.titleholder, asm_presence_data(a, "recorded"))
    return a


async def update_asm_presence(
    *, session: AsyncSession, presence_id: str, body: schemas.AsmPresencePatch
) -> AsmPresence:
    a = await repository.get_asm_presence(session, presence_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    _not_null(changes, "relation", "since", "source")
    if not changes:
        return a
    try:
        domain.check_period(changes.get("since", a.since), changes.get("until", a.until), "since", "until")
    except DomainError as exc:
        raise _invalid(exc) from exc
    for name, value in changes.items():
        setattr(a, name, value.value if name == "relation" else value)
    a.version += 1
    a.updated_at = datetime.now(UTC)
    await session.flush()
    await _publish(session, "registry.asm_presence.changed", a.titleholder, asm_presence_data(a, "updated"))
    return a


async def add_agreement(
    *, session: AsyncSession, titleholder: str, body: schemas.CoexistenceAgreementCreate
) -> CoexistenceAgreement:
    p = await _titleholder(session, titleholder)
    try:
        groups = domain.check_agreement_groups(p.id, body.asm_groups)
        domain.check_agreement_dates(body.signed, body.valid_from, body.valid_until)
    except DomainError as exc:
        raise _invalid(exc) from exc
    await _asm_groups(session, groups, "body.asm_groups")
    a = CoexistenceAgreement(
        id=str(uuid.uuid4()),
        titleholder=p.id,
        asm_groups=groups,
        status=body.status.value,
        signed=body.signed,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        reference=body.reference,
    )
    session.add(a)
    await session.flush()
    await session.refresh(a)
    await _publish(session, "registry.coexistence_agreement.changed", a.titleholder, agreement_data(a, "recorded"))
    return a


async def update_agreement(
    *, session: AsyncSession, agreement_id: str, body: schemas.CoexistenceAgreementPatch
) -> CoexistenceAgreement:
    a = await repository.get_agreement(session, agreement_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    _not_null(changes, "asm_groups", "status", "valid_from")
    if not changes:
        return a
    try:
        groups = domain.check_agreement_groups(a.titleholder, changes.get("asm_groups", list(a.asm_groups)))
        domain.check_agreement_dates(
            changes.get("signed", a.signed),
            changes.get("valid_from", a.valid_from),
            changes.get("valid_until", a.valid_until),
        )
    except DomainError as exc:
        raise _invalid(exc) from exc
    if "asm_groups" in changes:
        await _asm_groups(session, groups, "body.asm_groups")
        changes["asm_groups"] = groups
    if body.status is not None:
        changes["status"] = body.status.value
    for name, value in changes.items():
        setattr(a, name, value)
    a.version += 1
    a.updated_at = datetime.now(UTC)
    await session.flush()
    await _publish(session, "registry.coexistence_agreement.changed", a.titleholder, agreement_data(a, "updated"))
    return a


# --- regulators -------------------------------------------------------------------------------------------------
# A regulator reads, in full, what its grants open (custody and audit decide what that is from the token's `grant`
# claim) and writes nothing. Each grant is one token whose `nbf` and `exp` are its period; a revoked one joins the
# revocation list. Grants and revocations are published on registry.events (`registry.regulator.*`): the trail of
# who was given access to what, and why; custody and audit keep nothing of them.


def _whole_seconds(t: datetime, where: str) -> datetime:
    """A time as a token carries it (`nbf`, `exp`: whole seconds, UTC); 422 on `where` past the calendar's ends."""
    try:
        return t.astimezone(UTC).replace(microsecond=0)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00, 9999-12-31T23:59:59-14:00
        raise InvalidInput(where, "out of range") from exc


async def register_regulator(*, session: AsyncSession, body: schemas.RegulatorCreate) -> Regulator:
    try:
        country = domain.check_country(body.country)
    except DomainError as exc:
        raise _invalid(exc) from exc
    r = Regulator(id=str(uuid.uuid4()), name=body.name, authority=body.authority, country=country)
    session.add(r)
    await session.flush()
    await session.refresh(r)
    return r


def grant_data(g: RegulatorGrant, regulator: Regulator) -> dict[str, Any]:
    """A grant as published (never its token), with the regulator it was given to."""
    return {
        **schemas.Grant.model_validate(g).model_dump(mode="json"),
        "regulator": schemas.Regulator.model_validate(regulator).model_dump(mode="json"),
    }


def check_grant_period(start: datetime, end: datetime, now: datetime) -> None:
    """A grant's period: it ends after it starts, lasts at most MAX_GRANT_DAYS, ends in the future and starts at
    most MAX_GRANT_START_DAYS ahead (422 naming the field)."""
    if end <= start:
        raise InvalidInput("body.valid_until", "must be after valid_from")
    if end - start > timedelta(days=schemas.MAX_GRANT_DAYS):
        raise InvalidInput("body.valid_until", f"at most {schemas.MAX_GRANT_DAYS} days after valid_from")
    if end <= now:
        raise InvalidInput("body.valid_until", "must be in the future")
    if start > now + timedelta(days=schemas.MAX_GRANT_START_DAYS):
        raise InvalidInput("body.valid_from", f"at most {schemas.MAX_GRANT_START_DAYS} days from now")


async def grant_access(
    *, session: AsyncSession, regulator_id: str, body: schemas.GrantCreate
) -> tuple[RegulatorGrant, Regulator, str]:
    """Record a grant and issue its token (returned once)."""
    regulator = await repository.get_regulator(session, regulator_id)
    lots, participants = sorted(set(body.lots)), sorted(set(body.participants))
    if not lots and not participants:
        raise InvalidInput("body", "name at least one lot or participant")
    start = _whole_seconds(body.valid_from, "body.valid_from")
    end = _whole_seconds(body.valid_until, "body.valid_until")
    check_grant_period(start, end, datetime.now(UTC))
    known = await repository.existing_participants(session, participants) if participants else set()
    for i, pid in enumerate(body.participants):
        if pid not in known:
            raise InvalidInput(f"body.participants.{i}", f"{pid!r} is not a registered participant")
    g = RegulatorGrant(
        id=str(uuid.uuid4()),
        regulator_id=regulator.id,
        lots=lots,
        participants=participants,
        valid_from=start,
        valid_until=end,
        reason=body.reason,
    )
    token = await credentials.issue_regulator(session, g)
    session.add(g)
    await session.flush()
    await session.refresh(g)
    await _publish(session, "registry.regulator.granted", regulator.id, grant_data(g, regulator))
    return g, regulator, token


async def revoke_grant(
    *, session: AsyncSession, regulator_id: str, grant_id: str, reason: str | None
) -> RegulatorGrant:
    regulator = await repository.get_regulator(session, regulator_id)
    g = await repository.get_grant(session, regulator_id, grant_id)
    if g.revoked_at is not None:
        raise Conflict(f"Grant {grant_id} was already revoked at {g.revoked_at.isoformat()}.")
    g.revoked_at = datetime.now(UTC)
    g.revoked_reason = reason
    await session.flush()
    await _publish(session, "registry.regulator.grant_revoked", regulator.id, grant_data(g, regulator))
    return g
