"""Request and response models of the registry API (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, PositiveFloat, StringConstraints

from registry.domain import AgreementStatus, AsmRelation, Kind, Mineral, MiningType, RiskFactor, RiskLevel, Scheme
from shared.text import as_sent_at_most
from shared.vocab import DEFAULT_DISCLOSURE, Disclosure

CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True),
    Field(description="ISO 3166-1 alpha-2", examples=["CD"]),
]
RegionCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$", to_upper=True),
    Field(description="ISO 3166-2 subdivision of the country", examples=["CD-SK"]),
]
# Lengths as sent, then stripped (`shared.text`): 300 spaces around a name are refused, not stored as the name.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), as_sent_at_most(200)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300), as_sent_at_most(300)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identifiers(Strict):
    rmi_smelter_id: str | None = Field(
        None, pattern=r"^CID\d{6}$", description="RMI smelter/refiner id", examples=["CID001234"]
    )
    gln: str | None = Field(None, pattern=r"^\d{13}$", description="GS1 Global Location Number")
    lei: str | None = Field(None, pattern=r"^[A-Z0-9]{18}[0-9]{2}$", description="Legal Entity Identifier")
    national_id: str | None = Field(None, min_length=1, max_length=64, description="National company number")


Capacity = dict[Mineral, PositiveFloat]

PARTICIPANT_EXAMPLE: dict[str, Any] = {
    "name": "Kivu Artisanal Tin Cooperative",
    "kind": "mine",
    "country": "CD",
    "region": "CD-SK",
    "identifiers": {"national_id": "CD/SK/2019/0042"},
    "mining_type": "asm",
    "annual_capacity_kg": {"tin": 120000},
}


class ParticipantCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PARTICIPANT_EXAMPLE]})

    name: Name
    kind: Kind
    country: CountryCode
    region: RegionCode | None = None
    identifiers: Identifiers = Field(default_factory=Identifiers)
    mining_type: MiningType | None = Field(None, description="Mines only: asm (artisanal/small-scale) or lsm")
    annual_capacity_kg: Capacity = Field(default_factory=dict, description="Mines only: declared kg per year")
    disclosure: Disclosure | None = Field(
        None,
        description="Who may learn its identity (see `PUT /participants/{id}/disclosure`); absent: `counterparties`, "
        "`public` for smelters and refiners (the only policy they may have)",
    )


class ParticipantPatch(Strict):
    """Corrections. The kind cannot change (tokens carry it): register a new participant instead."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Kivu Tin Coop (SK)"}]})

    name: Name | None = None
    country: CountryCode | None = None
    region: RegionCode | None = None
    identifiers: Identifiers | None = None
    mining_type: MiningType | None = None
    annual_capacity_kg: Capacity | None = None
    disclosure: Disclosure | None = None


class Participant(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    **PARTICIPANT_EXAMPLE,
                    "version": 1,
                    "created_at": "2026-11-23T10:00:00Z",
                    "updated_at": "2026-11-23T10:00:00Z",
                }
            ]
        },
    )

    id: str
    name: str
    kind: Kind
    country: str
    region: str | None
    identifiers: Identifiers
    mining_type: MiningType | None
    annual_capacity_kg: dict[str, float]
    disclosure: Disclosure = Field(
        DEFAULT_DISCLOSURE,
        description="Who may learn its identity: operator | counterparties | downstream | public (smelters and "
        "refiners: always public). Absent from events published before policies: the default, counterparties",
    )
    version: int
    created_at: datetime
    updated_at: datetime


class Credential(BaseModel):
    """A participant token. The token is shown once, when issued; keep it secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9...",
                    "token_type": "Bearer",
                    "token_id": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                    "participant_id": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    "expires_at": "2027-11-23T10:00:00Z",
                }
            ]
        }
    )

    token: str
    token_type: str = "Bearer"
    token_id: str
    participant_id: str
    expires_at: datetime


class CredentialInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token_id": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                    "participant_id": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    "issued_at": "2026-11-23T10:00:00Z",
                    "expires_at": "2027-11-23T10:00:00Z",
                    "revoked_at": None,
                    "revoked_reason": None,
                }
            ]
        }
    )

    token_id: str
    participant_id: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


class Revoke(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "laptop stolen"}]})

    reason: Reference | None = None


class ParticipantRegistered(BaseModel):
    participant: Participant
    credential: Credential


class ParticipantPage(BaseModel):
    """A page of participants: in full for the operator, compliance officers and regulators; for a participant, its
    directory (itself in full; the cards of smelters and refiners, of participants whose policy is public and of its
    contacts whose policy allows it)."""

    items: list[DirectoryEntry]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page")


class CertificationCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "scheme": "rmap",
                    "status": "conformant",
                    "valid_from": "2026-01-15",
                    "valid_until": "2027-01-14",
                    "reference": "RMAP assessment 2026-017",
                },
                {"scheme": "irma", "level": "irma_75", "valid_from": "2025-06-01", "valid_until": "2028-05-31"},
            ]
        },
    )

    scheme: Scheme
    status: str | None = Field(None, description="rmap, fairmined, craft, itsci: the status")
    level: str | None = Field(None, description="irma: the achievement level")
    valid_from: date
    valid_until: date | None = None
    reference: Reference | None = None


class Certification(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "c1",
                    "participant_id": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    "scheme": "rmap",
                    "status": "conformant",
                    "level": None,
                    "valid_from": "2026-01-15",
                    "valid_until": "2027-01-14",
                    "reference": "RMAP assessment 2026-017",
                    "recorded_at": "2026-11-23T10:00:00Z",
                }
            ]
        },
    )

    id: str
    participant_id: str
    scheme: Scheme
    status: str | None
    level: str | None
    valid_from: date
    valid_until: date | None
    reference: str | None
    recorded_at: datetime


class CertificationList(BaseModel):
    participant_id: str
    as_of: date | None = Field(None, description="Set when the list answers 'what was held on this day'")
    items: list[Certification]


CAHRA_EXAMPLE: dict[str, Any] = {
    "country": "CD",
    "region": "CD-NK",
    "name": "Nord-Kivu",
    "conflict_affected": True,
    "high_risk": False,
    "effective_from": "2026-06-27",
    "effective_to": None,
    "source": "EU indicative CAHRA list, report June 2026",
}


class CahraCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CAHRA_EXAMPLE]})

    country: CountryCode
    region: RegionCode | None = Field(None, description="Absent: the whole country is listed")
    name: Name | None = None
    conflict_affected: bool = False
    high_risk: bool = True
    effective_from: date
    effective_to: date | None = Field(None, description="Last day the listing applies; null while it applies")
    source: Reference


class CahraPatch(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"effective_to": "2027-03-31"}]})

    name: Name | None = None
    conflict_affected: bool | None = None
    high_risk: bool | None = None
    effective_from: date | None = None
    effective_to: date | None = None
    source: Reference | None = None


class Cahra(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{"id": "a1", **CAHRA_EXAMPLE, "updated_at": "2026-11-23T10:00:00Z"}]},
    )

    id: str
    country: str
    region: str | None
    name: str | None
    conflict_affected: bool
    high_risk: bool
    effective_from: date
    effective_to: date | None
    source: str
    updated_at: datetime


class CahraList(BaseModel):
    as_of: date | None
    items: list[Cahra]


# --- country and region risk profiles ----------------------------------------------------------------------------

MAX_RISK_PROFILES_PER_REQUEST = 500
RISK_PROFILE_EXAMPLE: dict[str, Any] = {
    "country": "CD",
    "region": "CD-SK",
    "factor": "conflict_and_armed_groups",
    "level": "high",
    "effective_from": "2026-01-01",
    "effective_to": None,
    "source": "ILLUSTRATIVE - not an assessment",
}


class RiskProfileCreate(Strict):
    """One risk factor of a place over a period. A row with the same place, factor, start and source as one already
    recorded is that row: sent again it changes nothing, or corrects its level and end (batch-safe)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RISK_PROFILE_EXAMPLE]})

    country: CountryCode
    region: RegionCode | None = Field(None, description="Absent: the profile is the whole country's")
    factor: RiskFactor = Field(description="A risk the OECD Due Diligence Guidance (Annex II) names")
    level: RiskLevel
    effective_from: date
    effective_to: date | None = Field(None, description="Last day the profile applies; null while it applies")
    source: Reference = Field(description="Who assessed it, which report or data set, which edition")


class RiskProfileBatch(Strict):
    """Up to 500 profiles, recorded all or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        RISK_PROFILE_EXAMPLE,
                        {**RISK_PROFILE_EXAMPLE, "factor": "worst_forms_of_child_labour", "level": "medium"},
                    ]
                }
            ]
        },
    )

    items: list[RiskProfileCreate] = Field(min_length=1, max_length=MAX_RISK_PROFILES_PER_REQUEST)


class RiskProfilePatch(Strict):
    """A correction: the level, the period or the source. The place and the factor are what the row is about: record
    another row for another one."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"level": "medium"}, {"effective_to": "2027-03-31"}]}
    )

    level: RiskLevel | None = None
    effective_from: date | None = None
    effective_to: date | None = None
    source: Reference | None = None


class RiskProfile(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "5b0e6c1d-2a3f-4e5d-8c7b-9a0f1e2d3c4b",
                    **RISK_PROFILE_EXAMPLE,
                    "updated_at": "2026-12-05T10:00:00Z",
                }
            ]
        },
    )

    id: str
    country: str
    region: str | None
    factor: RiskFactor
    level: RiskLevel
    effective_from: date
    effective_to: date | None
    source: str
    updated_at: datetime


class RiskProfilesRecorded(BaseModel):
    """What a batch did: each profile as it now is, in the order sent, and how many were new, corrected, the same."""

    items: list[RiskProfile]
    added: int
    updated: int
    unchanged: int


class RiskProfilePage(BaseModel):
    as_of: date | None = Field(None, description="Set when the list answers 'what applied on this day'")
    items: list[RiskProfile]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page")


class RevokedToken(BaseModel):
    token_id: str
    expires_at: datetime
    revoked_at: datetime


class RevocationList(BaseModel):
    """Revoked tokens that have not expired yet: services poll this to refuse them within seconds."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-23T10:00:00Z",
                    "revoked": [
                        {
                            "token_id": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                            "expires_at": "2027-11-23T10:00:00Z",
                            "revoked_at": "2026-11-23T09:59:00Z",
                        }
                    ],
                }
            ]
        }
    )

    generated_at: datetime
    revoked: list[RevokedToken]


# --- compliance officers ----------------------------------------------------------------------------------------

OFFICER_ID = "c0ff1ce5-7a4e-4d1c-9a0e-2f6b8d3e5a10"
OfficerScope = (
    Literal["all"]
    | Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=200)]], Field(min_length=1, max_length=200)
    ]
)


class OfficerCreate(Strict):
    """A person who decides on flags in the audit service (resolves them, re-opens them), for the participants in
    `scope` (`"all"`: every participant). Their tokens carry the scope; register them again, or issue a new token
    after a change, to widen or narrow it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Amani Mushagalusa", "contact": "a.mushagalusa@example.org", "scope": "all"},
                {"name": "Jeanne Kabila", "contact": "EMP-00417", "scope": ["6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"]},
            ]
        },
    )

    name: Name
    contact: Reference = Field(description="An email address or another reference (staff number, mandate)")
    scope: OfficerScope = Field(
        "all", description='`"all"`, or the ids of the participants this officer oversees (at most 200)'
    )


class Officer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": OFFICER_ID,
                    "name": "Amani Mushagalusa",
                    "contact": "a.mushagalusa@example.org",
                    "scope": "all",
                    "created_at": "2026-12-05T10:00:00Z",
                }
            ]
        }
    )

    id: str
    name: str
    contact: str
    scope: Literal["all"] | list[str] = Field(description='`"all"`, or the participant ids this officer oversees')
    created_at: datetime


class OfficerCredential(BaseModel):
    """A compliance officer's token (kind `officer`, with its scope). Shown once, when issued; keep it secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9...",
                    "token_type": "Bearer",
                    "token_id": "8d0c5a1e-2f4b-4e7a-9c61-3b5d7e9f1a20",
                    "officer_id": OFFICER_ID,
                    "scope": "all",
                    "expires_at": "2027-12-05T10:00:00Z",
                }
            ]
        }
    )

    token: str
    token_type: str = "Bearer"
    token_id: str
    officer_id: str
    scope: Literal["all"] | list[str]
    expires_at: datetime


class OfficerRegistered(BaseModel):
    officer: Officer
    credential: OfficerCredential


class OfficerList(BaseModel):
    items: list[Officer]


class OfficerCredentialInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token_id": "8d0c5a1e-2f4b-4e7a-9c61-3b5d7e9f1a20",
                    "officer_id": OFFICER_ID,
                    "scope": "all",
                    "issued_at": "2026-12-05T10:00:00Z",
                    "expires_at": "2027-12-05T10:00:00Z",
                    "revoked_at": None,
                    "revoked_reason": None,
                }
            ]
        }
    )

    token_id: str
    officer_id: str
    scope: Literal["all"] | list[str]
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


# --- artisanal and industrial mining side by side (IRMA Standard chapter 3.6) ------------------------------------

TITLEHOLDER_ID = "5b2e9a4c-7d1f-4e3a-8c6b-1f2e3d4c5b6a"
ASM_GROUP_ID = "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"
ParticipantId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ASM_PRESENCE_EXAMPLE: dict[str, Any] = {
    "asm_group": ASM_GROUP_ID,
    "relation": "on_title",
    "since": "2024-03-01",
    "until": None,
    "source": "Site visit report 2026-04, Kivu Tin SA concession PE 4731",
}

ASM_PRESENCE_OUT_EXAMPLE: dict[str, Any] = {
    "id": "2a7d4c1e-9b3f-4e8a-a6d2-5c1b0e9f8a37",
    "titleholder": TITLEHOLDER_ID,
    **ASM_PRESENCE_EXAMPLE,
    "version": 1,
    "recorded_at": "2026-12-05T10:00:00Z",
    "updated_at": "2026-12-05T10:00:00Z",
}


class AsmPresenceCreate(Strict):
    """Artisanal miners (a registered ASM group: a mine with mining_type asm) working on or next to the title of
    the industrial titleholder in the path (a mine with mining_type lsm)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ASM_PRESENCE_EXAMPLE]})

    asm_group: ParticipantId = Field(description="The ASM group's participant id (a mine registered as asm)")
    relation: AsmRelation = Field(description="on_title: on the titleholder's concession; adjacent: next to it")
    since: date = Field(description="First day the group is known to work there")
    until: date | None = Field(None, description="Last day; null while the group works there")
    source: Reference = Field(description="Where this is known from (site visit, report, grievance...)")


class AsmPresencePatch(Strict):
    """Corrections, or the end of a presence (`until`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"until": "2026-10-31"}]})

    relation: AsmRelation | None = None
    since: date | None = None
    until: date | None = None
    source: Reference | None = None


class AsmPresence(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [ASM_PRESENCE_OUT_EXAMPLE]},
    )

    id: str
    titleholder: str
    asm_group: str
    relation: AsmRelation
    since: date
    until: date | None
    source: str
    version: int
    recorded_at: datetime
    updated_at: datetime


class AsmPresenceList(BaseModel):
    titleholder: str
    items: list[AsmPresence]


AGREEMENT_EXAMPLE: dict[str, Any] = {
    "asm_groups": [ASM_GROUP_ID],
    "status": "in_force",
    "signed": "2025-01-20",
    "valid_from": "2025-02-01",
    "valid_until": "2028-01-31",
    "reference": "Coexistence agreement PE 4731 / COOPEMIKI, 2025",
}
AGREEMENT_OUT_EXAMPLE: dict[str, Any] = {
    "id": "9c4e2b7a-1d3f-4e5b-8e6c-7f0a1b2c3d4e",
    "titleholder": TITLEHOLDER_ID,
    **AGREEMENT_EXAMPLE,
    "version": 1,
    "recorded_at": "2026-12-05T10:00:00Z",
    "updated_at": "2026-12-05T10:00:00Z",
}
AgreementGroups = Annotated[list[ParticipantId], Field(min_length=1, max_length=50)]


class CoexistenceAgreementCreate(Strict):
    """An agreement between the industrial titleholder in the path and ASM groups working on or next to its title
    (ARM's principles of coexistence; IRMA Standard chapter 3.6)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [AGREEMENT_EXAMPLE]})

    asm_groups: AgreementGroups = Field(
        description="The ASM groups party to the agreement (mines registered as asm), each once, at most 50"
    )
    status: AgreementStatus = Field(
        description="negotiating | in_force | suspended | terminated. In force on a day: `in_force` and the day "
        "within valid_from..valid_until; `terminated` covers the days up to its valid_until"
    )
    signed: date | None = Field(None, description="Day it was signed; null while negotiating")
    valid_from: date
    valid_until: date | None = Field(None, description="Last day it applies; null: open-ended")
    reference: Reference | None = None


class CoexistenceAgreementPatch(Strict):
    """A new status (in force, suspended, terminated), new dates or parties."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "terminated", "valid_until": "2026-11-30"}]},
    )

    asm_groups: AgreementGroups | None = None
    status: AgreementStatus | None = None
    signed: date | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    reference: Reference | None = None


class CoexistenceAgreement(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [AGREEMENT_OUT_EXAMPLE]},
    )

    id: str
    titleholder: str
    asm_groups: list[str]
    status: AgreementStatus
    signed: date | None
    valid_from: date
    valid_until: date | None
    reference: str | None
    version: int
    recorded_at: datetime
    updated_at: datetime


class CoexistenceAgreementList(BaseModel):
    titleholder: str
    items: list[CoexistenceAgreement]


# --- regulators -------------------------------------------------------------------------------------------------

REGULATOR_ID = "9e3b1d2a-6c4f-4a8e-b5d7-1f0e2c3a4b59"
GRANT_ID = "4a7c2e91-0b3d-4f6a-8e5c-7d1b9a2f3c60"
MAX_GRANT_DAYS = 366  # a grant's period, valid_from to valid_until, at most this long
MAX_GRANT_START_DAYS = 366  # a grant starts at most this far ahead
GrantLot = Annotated[
    str,
    StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$"),
    Field(description="A lot id as custody returned it (`lot_id`), scoped ids included", examples=["KTC:TAG-0042"]),
]
GrantParticipant = Annotated[str, StringConstraints(min_length=1, max_length=200), Field(description="Participant id")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), as_sent_at_most(1000)]
_GRANT_EXAMPLE: dict[str, Any] = {
    "lots": ["KTC:TAG-0042137"],
    "participants": ["6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"],
    "valid_from": "2027-01-01T00:00:00Z",
    "valid_until": "2027-03-31T23:59:59Z",
    "reason": "EU 2017/821 ex-post check of importer 6f1c2b0e (case CA-2027-014)",
}
GRANT_OUT_EXAMPLE: dict[str, Any] = {
    "id": GRANT_ID,
    "regulator_id": REGULATOR_ID,
    **_GRANT_EXAMPLE,
    "token_id": "2b6f0e1d-8c3a-4d5e-9f7a-0c1b2d3e4f51",
    "issued_at": "2026-12-20T10:00:00Z",
    "revoked_at": None,
    "revoked_reason": None,
}


class RegulatorCreate(Strict):
    """A competent authority (EU Regulation 2017/821 art. 10 checks, a national mines ministry, a customs office)
    that reads what its grants open. It gets no token of its own: each grant comes with one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Bureau of Mineral Imports", "authority": "Competent authority (EU) 2017/821", "country": "BE"}
            ]
        },
    )

    name: Name
    authority: Reference = Field(description="The mandate it acts under (law, office)")
    country: CountryCode


REGULATOR_EXAMPLE: dict[str, Any] = {
    "id": REGULATOR_ID,
    "name": "Bureau of Mineral Imports",
    "authority": "Competent authority (EU) 2017/821",
    "country": "BE",
    "created_at": "2026-12-20T09:00:00Z",
}


class Regulator(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [REGULATOR_EXAMPLE]})

    id: str
    name: str
    authority: str
    country: str
    created_at: datetime


class RegulatorList(BaseModel):
    items: list[Regulator]


class GrantCreate(Strict):
    """Read access to lots (each with its upstream) and to participants (the lots they hold or held, with their
    upstream), from `valid_from` to `valid_until` (at most 366 days; it must end in the future). At least one lot
    or participant; at most 200 of each."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_GRANT_EXAMPLE]})

    lots: list[GrantLot] = Field(default_factory=list, max_length=200)
    participants: list[GrantParticipant] = Field(default_factory=list, max_length=200)
    valid_from: AwareDatetime = Field(description="When the access starts (the token's `nbf`); with a time zone")
    valid_until: AwareDatetime = Field(description="When it ends (the token's `exp`); with a time zone")
    reason: Reason = Field(description="Why the access is given (kept, and published with the grant)")


class Grant(BaseModel):
    """A grant as recorded (never its token). Times are whole seconds, as the token carries them."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [GRANT_OUT_EXAMPLE]})

    id: str
    regulator_id: str
    lots: list[str]
    participants: list[str]
    valid_from: datetime
    valid_until: datetime
    reason: str
    token_id: str = Field(validation_alias=AliasChoices("token_id", "jti"), description="The token's `jti`")
    issued_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


class RegulatorCredential(BaseModel):
    """The token of a grant: kind `regulator`, valid from `not_before` to `expires_at`. Shown once; keep it secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9...",
                    "token_type": "Bearer",
                    "token_id": "2b6f0e1d-8c3a-4d5e-9f7a-0c1b2d3e4f51",
                    "regulator_id": REGULATOR_ID,
                    "not_before": "2027-01-01T00:00:00Z",
                    "expires_at": "2027-03-31T23:59:59Z",
                }
            ]
        }
    )

    token: str
    token_type: str = "Bearer"
    token_id: str
    regulator_id: str
    not_before: datetime
    expires_at: datetime


class GrantIssued(BaseModel):
    grant: Grant
    credential: RegulatorCredential


class GrantList(BaseModel):
    regulator_id: str
    items: list[Grant]


# --- disclosure policies and the directory -------------------------------------------------------------------------

MINE_ID = "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"
TRADER_ID = "1d4b7e2a-8c3f-4a6e-b5d9-0e7f1a2b3c4d"
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), as_sent_at_most(500)]


class DisclosureChange(Strict):
    """A participant's disclosure policy: who may learn its identity (id, name, identifiers) where it appears in what
    others read. `operator`: the operator and regulators only (a counterparty still sees it on the shipments they
    share); `counterparties`: also its direct counterparties; `downstream`: also everyone downstream of its
    material; `public`: everyone. Smelters and refiners are public by nature."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"disclosure": "downstream"}]})

    disclosure: Disclosure


DirectoryRelation = Literal["smelter_or_refiner", "public", "contact", "found_by_identifier"]


class ParticipantCard(BaseModel):
    """Another participant as a participant's directory shows it: who it is, never its identifiers (but a smelter's
    or refiner's RMI facility id, which is public) nor its capacities."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                    "name": "Malacca Tin Smelting",
                    "kind": "smelter",
                    "country": "MY",
                    "region": None,
                    "mining_type": None,
                    "rmi_smelter_id": "CID001234",
                    "listed_as": "smelter_or_refiner",
                },
                {
                    "id": TRADER_ID,
                    "name": "Great Lakes Minerals",
                    "kind": "trader",
                    "country": "RW",
                    "region": None,
                    "mining_type": None,
                    "rmi_smelter_id": None,
                    "listed_as": "contact",
                },
            ]
        }
    )

    id: str
    name: str
    kind: Kind
    country: str
    region: str | None
    mining_type: MiningType | None
    rmi_smelter_id: str | None = Field(description="Smelters and refiners only: their RMI facility id (public)")
    listed_as: DirectoryRelation = Field(
        description="Why you see it: a smelter or refiner (public by nature), a participant whose policy is public, "
        "a contact the operator introduced you to (an invitation), or found by its exact identifier "
        "(`GET /participants/lookup`)"
    )


DirectoryEntry = Participant | ParticipantCard
"""What a read of the registry's participants returns: a participant in full (yourself; everyone for the operator,
compliance officers and regulators) or another participant's card."""


class LookupResult(BaseModel):
    """The participants with exactly that identifier that may be found (a legal entity's LEI may name several
    sites), oldest first, at most 20. None: 404, as for an identifier nobody has."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": TRADER_ID,
                            "name": "Great Lakes Minerals",
                            "kind": "trader",
                            "country": "RW",
                            "region": None,
                            "mining_type": None,
                            "rmi_smelter_id": None,
                            "listed_as": "public",
                        }
                    ]
                }
            ]
        }
    )

    items: list[DirectoryEntry]


INVITATION_EXAMPLE: dict[str, Any] = {
    "participant_id": TRADER_ID,
    "invitee_id": MINE_ID,
    "note": "Introduced at the Bukavu traders' meeting, 2026-12-01",
}


class InvitationCreate(Strict):
    """The operator introduces two participants: each then finds the other in its directory, as the other's policy
    allows for a counterparty (every policy but `operator`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [INVITATION_EXAMPLE]})

    participant_id: ParticipantId = Field(description="Who is introduced (e.g. a buyer looking for suppliers)")
    invitee_id: ParticipantId = Field(description="To whom")
    note: Note | None = Field(None, description="Why, for both of them (at most 500 characters)")


class Invitation(BaseModel):
    """An introduction. Shown to one of its two participants, the other one's id is null (and listed in
    `withheld`) when its policy is `operator`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8",
                    **INVITATION_EXAMPLE,
                    "created_at": "2026-12-06T09:00:00Z",
                    "withheld": [],
                }
            ]
        }
    )

    id: str
    participant_id: str | None
    invitee_id: str | None
    note: str | None
    created_at: datetime
    withheld: list[str] = Field(default_factory=list, description="The fields not shown to you (null above)")


class InvitationPage(BaseModel):
    items: list[Invitation]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page")
