"""The registry service's tables."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from registry.assessments_models import SelfAssessment  # noqa: F401 (its table)
from registry.db import Base
from registry.facilities_models import FacilityListImport  # noqa: F401 (its table)
from registry.untp_models import UntpCredential  # noqa: F401 (its table)
from shared.db import DeadLetterMixin, OutboxMixin


class OutboxEvent(OutboxMixin, Base):
    """Events waiting for (or already given to) Kafka; written in the same transaction as the change they record."""


class DeadLetter(DeadLetterMixin, Base):
    """Outbox rows the broker can never take, with the reason; the relay went on without them (shared.relay)."""


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (Index("ix_participants_kind_country", "kind", "country", "seq"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)  # stable listing order
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    identifiers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    rmi_smelter_id: Mapped[str | None] = mapped_column(Text, unique=True)
    mining_type: Mapped[str | None] = mapped_column(Text)
    annual_capacity_kg: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Who may learn its identity (`shared.vocab.Disclosure`); smelters and refiners are always `public`.
    disclosure: Mapped[str] = mapped_column(Text, server_default=text("'counterparties'"))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Invitation(Base):
    """The operator introduced two participants: each finds the other in its directory (`GET /participants`), as
    the other's disclosure policy allows for a counterparty. Never removed."""

    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("participant_id", "invitee_id"),
        Index("ix_invitations_invitee", "invitee_id", "seq"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    invitee_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Certification(Base):
    """Certifications are never overwritten: each change is a new row, so the history answers as-of questions."""

    __tablename__ = "certifications"
    __table_args__ = (Index("ix_certifications_participant", "participant_id", "scheme", "seq"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    scheme: Mapped[str] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    level: Mapped[str | None] = mapped_column(Text)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CahraArea(Base):
    """A conflict-affected or high-risk area: a whole country (region NULL) or one ISO 3166-2 region."""

    __tablename__ = "cahra_areas"
    __table_args__ = (Index("ix_cahra_areas_country", "country", "region", "effective_from"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    conflict_affected: Mapped[bool] = mapped_column(server_default=text("false"))
    high_risk: Mapped[bool] = mapped_column(server_default=text("true"))
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AsmPresence(Base):
    """Artisanal miners (an ASM group) working on or next to an industrial titleholder's title (IRMA chapter 3.6)."""

    __tablename__ = "asm_presence"
    __table_args__ = (
        Index("ix_asm_presence_titleholder", "titleholder_id", "seq"),
        Index("ix_asm_presence_asm_group", "asm_group_id", "seq"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    titleholder: Mapped[str] = mapped_column("titleholder_id", ForeignKey("participants.id"))
    asm_group: Mapped[str] = mapped_column("asm_group_id", ForeignKey("participants.id"))
    relation: Mapped[str] = mapped_column(Text)  # on_title | adjacent
    since: Mapped[date] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CoexistenceAgreement(Base):
    """An agreement between an industrial titleholder and ASM groups working on or next to its title."""

    __tablename__ = "coexistence_agreements"
    __table_args__ = (
        Index("ix_coexistence_agreements_titleholder", "titleholder_id", "seq"),
        Index("ix_coexistence_agreements_asm_groups", "asm_groups", postgresql_using="gin"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    titleholder: Mapped[str] = mapped_column("titleholder_id", ForeignKey("participants.id"))
    asm_groups: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status: Mapped[str] = mapped_column(Text)  # negotiating | in_force | suspended | terminated
    signed: Mapped[date | None] = mapped_column(Date)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RiskProfile(Base):
    """One risk factor (OECD DDG Annex II) of a country (region NULL) or an ISO 3166-2 region, at a level, for a
    period, per a source: one row per place, factor and period. Corrected in place (`PATCH /risk-profiles/{id}`);
    every change is published as `registry.risk_profile.updated`."""

    __tablename__ = "risk_profiles"
    __table_args__ = (Index("ix_risk_profiles_place", "country", "region", "factor", "effective_from"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)  # stable listing order
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    factor: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(Text)
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SigningKey(Base):
    """Ed25519 keys that sign tokens and UNTP credentials. The public halves are published as a JWKS, every key ever
    used (`registry.credentials`): `next` from its creation, the signing key from `activates_at` (publish before
    use), `retired` once a newer key signs (`retired_at`, its private half erased; `tokens_until`: the last expiry
    of a token it signed, after which verifiers refuse tokens naming it; credentials it signed verify for ever)."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(Text, primary_key=True)
    private_pem: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once retired
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    activates_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tokens_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Credential(Base):
    """One issued token (only its id is kept: the token itself is shown once)."""

    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_revoked", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),)

    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    kid: Mapped[str] = mapped_column(ForeignKey("signing_keys.kid"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class ComplianceOfficer(Base):
    """A person the operator registered to decide on flags in the audit service (resolve, re-open), with tokens of
    their own. `scope`: the participants they oversee, NULL for all of them."""

    __tablename__ = "compliance_officers"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)  # stable listing order
    name: Mapped[str] = mapped_column(Text)
    contact: Mapped[str] = mapped_column(Text)
    scope: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OfficerCredential(Base):
    """One token issued to a compliance officer (only its id is kept); revoked ones join the revocation list."""

    __tablename__ = "officer_credentials"
    __table_args__ = (
        Index("ix_officer_credentials_revoked", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),
    )

    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("compliance_officers.id"), index=True)
    kid: Mapped[str] = mapped_column(ForeignKey("signing_keys.kid"))
    scope: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


# --- regulators ---------------------------------------------------------------------------------------------------


class Regulator(Base):
    """An authority the operator registered: it reads, in full, what its grants open, and writes nothing."""

    __tablename__ = "regulators"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)  # stable listing order
    name: Mapped[str] = mapped_column(Text)
    authority: Mapped[str] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegulatorGrant(Base):
    """Read access for a regulator to lots (and their upstream) and to participants (what they hold or held, and its
    upstream) from `valid_from` to `valid_until`: one token (`jti`; the token itself is shown once) whose `nbf` and
    `exp` are the period. A revoked one joins the revocation list until `valid_until`."""

    __tablename__ = "regulator_grants"
    __table_args__ = (
        Index("ix_regulator_grants_regulator", "regulator_id", "seq"),
        Index("ix_regulator_grants_revoked", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    regulator_id: Mapped[str] = mapped_column(ForeignKey("regulators.id"))
    lots: Mapped[list[str]] = mapped_column(ARRAY(Text))
    participants: Mapped[list[str]] = mapped_column(ARRAY(Text))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    jti: Mapped[str] = mapped_column(Text, unique=True)
    kid: Mapped[str] = mapped_column(ForeignKey("signing_keys.kid"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def expires_at(self) -> datetime:
        """When its token expires (as credentials say it, for the revocation list)."""
        return self.valid_until
