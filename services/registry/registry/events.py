"""The data of the events the registry publishes on `registry.events`, and their catalogue (`REGISTRY_EVENTS`).

`service.py` builds each event's data; these models describe it exactly (unknown fields are refused), the AsyncAPI
document at `/asyncapi.json` is generated from them, and `tests/registry/test_event_schemas.py` checks every event
the API publishes against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from registry import assessments_schemas, schemas
from registry.domain import Kind
from shared import topics
from shared.asyncapi import EventType

# The fields a correction may set: `changed` lists those whose value changed (kept in step with
# `schemas.ParticipantPatch` and `schemas.CahraPatch` by tests/shared/test_asyncapi.py).
ParticipantField = Literal[
    "name", "country", "region", "identifiers", "mining_type", "annual_capacity_kg", "disclosure"
]
CahraField = Literal["name", "conflict_affected", "high_risk", "effective_from", "effective_to", "source"]
RiskProfileField = Literal["level", "effective_from", "effective_to", "source"]

PARTICIPANT_ID = "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"
_PARTICIPANT: dict[str, Any] = {
    "id": PARTICIPANT_ID,
    **schemas.PARTICIPANT_EXAMPLE,
    "disclosure": "counterparties",
    "version": 1,
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
}
_AREA: dict[str, Any] = {
    "id": "3d0c8a8e-8a57-4d44-9b1e-6a0f3e1c2b77",
    **schemas.CAHRA_EXAMPLE,
    "updated_at": "2026-11-23T10:00:00Z",
}


class ParticipantRegistered(schemas.Participant):
    """A participant was registered. Its first credential follows as `registry.credential.issued`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_PARTICIPANT]})


class ParticipantUpdated(schemas.Participant):
    """A participant was corrected, or changed its disclosure policy (`PUT /participants/{id}/disclosure`:
    `changed` is `["disclosure"]`): the participant as it now is, and which fields changed. `disclosure` (every
    participant event carries it) is absent from events published before policies: read it as `counterparties`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    **_PARTICIPANT,
                    "name": "Kivu Tin Coop (SK)",
                    "version": 2,
                    "updated_at": "2026-11-24T08:30:00Z",
                    "changed": ["name"],
                },
                {
                    **_PARTICIPANT,
                    "disclosure": "downstream",
                    "version": 3,
                    "updated_at": "2026-12-06T09:00:00Z",
                    "changed": ["disclosure"],
                },
            ]
        },
    )

    changed: list[ParticipantField] = Field(
        description="The fields whose value the correction changed, sorted (a new country without a region also "
        "clears the region, which is then listed too)."
    )


class CertificationChanged(schemas.Certification):
    """A certification, audit status or assessment level was recorded for a participant."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "8e2f7d7c-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
                    "participant_id": PARTICIPANT_ID,
                    "scheme": "fairmined",
                    "status": "certified",
                    "level": None,
                    "valid_from": "2026-01-15",
                    "valid_until": "2027-01-14",
                    "reference": None,
                    "recorded_at": "2026-11-23T10:00:00Z",
                    "participant_kind": "mine",
                    "participant_country": "CD",
                }
            ]
        },
    )

    participant_kind: Kind
    participant_country: str = Field(description="ISO 3166-1 alpha-2 of the participant, when recorded")


class CahraArea(schemas.Cahra):
    """A conflict-affected or high-risk area, as `GET /cahra` shows it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_AREA]})


class _AddedOrUpdated(BaseModel):
    """A reference record added, or corrected: `changed` (the fields the correction gave) comes exactly with
    `updated`. Subclasses type `changed` with their own field names."""

    action: Literal["added", "updated"]
    changed: Sequence[str] | None = None

    @model_validator(mode="after")
    def _changed_only_when_updated(self) -> Self:
        if (self.action == "updated") != (self.changed is not None):
            raise ValueError("`changed` is given exactly when the action is `updated`")
        return self


class CahraUpdated(_AddedOrUpdated):
    """An area was added to the CAHRA list, or corrected (including the end of its listing, `effective_to`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "added", "area": _AREA},
                {
                    "action": "updated",
                    "changed": ["effective_to"],
                    "area": {**_AREA, "effective_to": "2027-03-31", "updated_at": "2027-04-01T09:00:00Z"},
                },
            ]
        },
    )

    action: Literal["added", "updated"]
    changed: list[CahraField] | None = Field(
        None,
        description="`updated` only: the fields the correction gave, sorted, whether or not their value differs "
        "(empty for an empty correction). Absent when `added`.",
    )
    area: CahraArea


_RISK_PROFILE: dict[str, Any] = {
    "id": "5b0e6c1d-2a3f-4e5d-8c7b-9a0f1e2d3c4b",
    **schemas.RISK_PROFILE_EXAMPLE,
    "updated_at": "2026-12-05T10:00:00Z",
}


class RiskProfile(schemas.RiskProfile):
    """One risk factor of a country or region, as `GET /risk-profiles` shows it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_RISK_PROFILE]})


class RiskProfileUpdated(_AddedOrUpdated):
    """A risk profile was recorded, or corrected (its level, period or source; `effective_to` ends it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "added", "profile": _RISK_PROFILE},
                {
                    "action": "updated",
                    "changed": ["level"],
                    "profile": {**_RISK_PROFILE, "level": "medium", "updated_at": "2027-01-10T09:00:00Z"},
                },
            ]
        },
    )

    action: Literal["added", "updated"]
    changed: list[RiskProfileField] | None = Field(
        None,
        description="`updated` only: the fields the correction gave, sorted (empty for an empty correction). "
        "Absent when `added`.",
    )
    profile: RiskProfile


class CredentialEvent(BaseModel):
    """A participant token was issued or revoked (never the token itself)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "participant_id": PARTICIPANT_ID,
                    "token_id": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                    "issued_at": "2026-11-23T10:00:00+00:00",
                    "expires_at": "2027-11-23T10:00:00+00:00",
                    "revoked_at": "2026-12-01T15:04:05+00:00",
                    "revoked_reason": "laptop stolen",
                }
            ]
        },
    )

    participant_id: str
    token_id: str = Field(description="The token's `jti`; services refuse a revoked one")
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = Field(description="Null in `registry.credential.issued`")
    revoked_reason: str | None


class AsmPresenceChanged(schemas.AsmPresence):
    """Artisanal miners were recorded on or next to an industrial mine's title, or that record was corrected or
    ended (`until`). Audit judges `coexistence_without_agreement` with it (IRMA Standard chapter 3.6)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "action": "recorded",
                    **schemas.ASM_PRESENCE_OUT_EXAMPLE,
                }
            ]
        },
    )

    action: Literal["recorded", "updated"]


class CoexistenceAgreementChanged(schemas.CoexistenceAgreement):
    """A coexistence agreement between an industrial titleholder and ASM groups was recorded or changed (status,
    dates, parties)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "action": "recorded",
                    **schemas.AGREEMENT_OUT_EXAMPLE,
                }
            ]
        },
    )

    action: Literal["recorded", "updated"]


class GrantRegulator(schemas.Regulator):
    """The regulator a grant was given to."""

    model_config = ConfigDict(extra="forbid")


class RegulatorGrantEvent(schemas.Grant):
    """Read access given to a regulator (lots and participants, for a period, and why), or its revocation: the trail
    of who was given access to what. Never the token. Custody and audit keep nothing of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    **schemas.GRANT_OUT_EXAMPLE,
                    "regulator": schemas.REGULATOR_EXAMPLE,
                }
            ]
        },
    )

    regulator: GrantRegulator


class SelfAssessmentSubmitted(BaseModel):
    """A participant's due-diligence self-assessment was submitted: its scores per OECD step, the total and the CMRT
    company-level answers derived from it. The answers' comments and evidence links stay in the registry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "assessment_id": assessments_schemas.ASSESSMENT_ID,
                    "participant_id": PARTICIPANT_ID,
                    "submitted_at": "2026-12-06T09:00:00Z",
                    "questionnaire_version": "2026-12",
                    "scores": assessments_schemas.SCORES_EXAMPLE,
                    "total": 75.3,
                    "cmrt_answers": assessments_schemas.CMRT_EXAMPLE,
                }
            ]
        },
    )

    assessment_id: str
    participant_id: str
    submitted_at: datetime
    questionnaire_version: str
    scores: assessments_schemas.StepScores
    total: float = Field(ge=0, le=100, description="The mean of the scored steps")
    cmrt_answers: dict[assessments_schemas.CmrtLetter, assessments_schemas.CmrtAnswer] = Field(
        description="CMRT company-level Declaration answers A-J (a letter the questionnaire did not answer is absent)"
    )


_PARTICIPANT_KEY = "participant id"

REGISTRY_EVENTS: list[EventType] = [
    EventType(
        type="registry.participant.registered",
        topic=topics.REGISTRY_EVENTS,
        key=_PARTICIPANT_KEY,
        summary="A participant was registered.",
        payload=ParticipantRegistered,
    ),
    EventType(
        type="registry.participant.updated",
        topic=topics.REGISTRY_EVENTS,
        key=_PARTICIPANT_KEY,
        summary="A participant was corrected, or changed its disclosure policy.",
        payload=ParticipantUpdated,
    ),
    EventType(
        type="registry.certification.changed",
        topic=topics.REGISTRY_EVENTS,
        key=_PARTICIPANT_KEY,
        summary="A certification, audit status or assessment level was recorded for a participant.",
        payload=CertificationChanged,
    ),
    EventType(
        type="registry.asm_presence.changed",
        topic=topics.REGISTRY_EVENTS,
        key="participant id of the titleholder",
        summary="Artisanal miners on or next to an industrial mine's title were recorded, corrected or ended.",
        payload=AsmPresenceChanged,
    ),
    EventType(
        type="registry.coexistence_agreement.changed",
        topic=topics.REGISTRY_EVENTS,
        key="participant id of the titleholder",
        summary="A coexistence agreement between an industrial titleholder and ASM groups was recorded or changed.",
        payload=CoexistenceAgreementChanged,
    ),
    EventType(
        type="registry.cahra.updated",
        topic=topics.REGISTRY_EVENTS,
        key="country (ISO 3166-1 alpha-2) of the area",
        summary="An area of the CAHRA list was added or corrected.",
        payload=CahraUpdated,
    ),
    EventType(
        type="registry.risk_profile.updated",
        topic=topics.REGISTRY_EVENTS,
        key="country (ISO 3166-1 alpha-2) of the profile",
        summary="A country or region risk profile (one factor, level, period, source) was recorded or corrected.",
        payload=RiskProfileUpdated,
    ),
    EventType(
        type="registry.self_assessment.submitted",
        topic=topics.REGISTRY_EVENTS,
        key=_PARTICIPANT_KEY,
        summary="A participant's due-diligence self-assessment was submitted (scores per OECD step, total, CMRT "
        "answers; no comments or links).",
        payload=SelfAssessmentSubmitted,
    ),
    EventType(
        type="registry.regulator.granted",
        topic=topics.REGISTRY_EVENTS,
        key="regulator id",
        summary="A regulator was given read access to lots and participants for a period (its token is not published).",
        payload=RegulatorGrantEvent,
    ),
    EventType(
        type="registry.regulator.grant_revoked",
        topic=topics.REGISTRY_EVENTS,
        key="regulator id",
        summary="A regulator's grant was revoked; every service refuses its token within seconds.",
        payload=RegulatorGrantEvent,
    ),
    EventType(
        type="registry.credential.issued",
        topic=topics.REGISTRY_EVENTS,
        key=_PARTICIPANT_KEY,
        summary="A token was issued to a participant.",
        payload=CredentialEvent,
    ),
    EventType(
        type="registry.credential.revoked",
        topic=topics.REGISTRY_EVENTS,
        key=_PARTICIPANT_KEY,
        summary="A participant's token was revoked; every service refuses it within seconds.",
        payload=CredentialEvent,
    ),
]
