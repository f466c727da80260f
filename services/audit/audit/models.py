"""The audit service's tables."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from audit.assessments_models import SelfAssessment  # noqa: F401 (its table)
from audit.db import Base
from audit.grievances_models import Grievance, GrievanceContact, GrievanceTriage  # noqa: F401 (their tables)
from shared.db import DeadLetterMixin, OutboxMixin, ProcessedEventMixin


class OutboxEvent(OutboxMixin, Base):
    """Flags waiting for (or already given to) Kafka's `audit.flags`."""


class DeadLetter(DeadLetterMixin, Base):
    """Outbox rows the broker can never take, with the reason; the relay went on without them (shared.relay)."""


class ProcessedEvent(ProcessedEventMixin, Base):
    """Every consumed event whose effect is committed: redelivery and replay skip these."""


class ReceivedEvent(Base):
    """The audit trail of every custody and registry event the audit service applied, as received.

    Deliberately without a uniqueness constraint on the event id: `processed_events` is what guarantees one effect
    per event, and the tests check exactly that.
    """

    __tablename__ = "received_events"
    __table_args__ = (
        Index("ix_received_events_event", "source", "event_id"),
        Index("ix_received_events_subject", "subject"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[Any] = mapped_column(JSON)  # as received: `json` keeps the text (and costs a replay less than jsonb)
    topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProjectionHead(Base):
    """How far the projection tables are, one row: `version` grows by one with every batch any replica commits, `seq`
    is the last `received_events.seq` applied. Each batch holds the row's lock to its commit (`projection.head`)."""

    __tablename__ = "projection_head"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    writer: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProjectionSkipped(Base):
    """An event kept in `received_events` whose effects PostgreSQL refused: a replica catching up leaves it out."""

    __tablename__ = "projection_skipped"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)


# --- the projection: what audit knows, built only from events ------------------------------------------------
# Every registry fact carries `known_at` (the time of the event that told us), so a rule can be evaluated with
# what was known at a given moment: replay then reaches the same flags whatever order the topics interleave in.


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    mining_type: Mapped[str | None] = mapped_column(Text)
    annual_capacity_kg: Mapped[Any] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(BigInteger)
    disclosure: Mapped[str | None] = mapped_column(Text)  # `shared.vocab.Disclosure`; null: the default
    rmi_smelter_id: Mapped[str | None] = mapped_column(Text)  # a smelter's or refiner's RMI facility id


class Certification(Base):
    __tablename__ = "certifications"
    __table_args__ = (Index("ix_certifications_participant", "participant_id", "scheme"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    participant_id: Mapped[str] = mapped_column(Text)
    scheme: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    known_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CahraArea(Base):
    __tablename__ = "cahra_areas"
    __table_args__ = (Index("ix_cahra_areas_country", "country", "region"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    known_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RiskProfile(Base):
    """A country or region risk profile (one factor, level, period, source) as the registry published it; a
    correction replaces its level, period and source (`known_at` stays when it first became known)."""

    __tablename__ = "risk_profiles"
    __table_args__ = (Index("ix_risk_profiles_country", "country", "region"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    factor: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(Text)
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    known_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AsmPresence(Base):
    """An ASM group on or next to an industrial titleholder's title, as the registry last published it (`version`)."""

    __tablename__ = "asm_presence"
    __table_args__ = (Index("ix_asm_presence_titleholder", "titleholder"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    titleholder: Mapped[str] = mapped_column(Text)
    asm_group: Mapped[str] = mapped_column(Text)
    relation: Mapped[str] = mapped_column(Text)
    since: Mapped[date] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
    known_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CoexistenceAgreement(Base):
    """A coexistence agreement between an industrial titleholder and ASM groups, as last published (`version`)."""

    __tablename__ = "coexistence_agreements"
    __table_args__ = (Index("ix_coexistence_agreements_titleholder", "titleholder"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    titleholder: Mapped[str] = mapped_column(Text)
    asm_groups: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status: Mapped[str] = mapped_column(Text)
    signed: Mapped[date | None] = mapped_column(Date)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
    known_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Lot(Base):
    __tablename__ = "lots"
    __table_args__ = (
        Index("ix_lots_origin", "origin_country", "origin_region"),
        Index("ix_lots_origin_participant", "origin_participant"),
    )

    lot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    mineral: Mapped[str] = mapped_column(Text)
    form: Mapped[str] = mapped_column(Text)
    mass_kg: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    origin_kind: Mapped[str] = mapped_column(Text)
    origin_participant: Mapped[str | None] = mapped_column(Text)
    origin_country: Mapped[str | None] = mapped_column(Text)
    origin_region: Mapped[str | None] = mapped_column(Text)
    origin_mining_type: Mapped[str | None] = mapped_column(Text)
    custodian: Mapped[str] = mapped_column(Text)
    origin_event: Mapped[str] = mapped_column(Text)
    origin_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_custody_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tag: Mapped[str | None] = mapped_column(Text)  # as registered or declared (bag-and-tag)
    seal: Mapped[str | None] = mapped_column(Text)
    produced_by: Mapped[str | None] = mapped_column(Text)  # an ASM group that produced a titleholder's origin lot
    origin_source: Mapped[str | None] = mapped_column(Text)  # a recycled origin lot's: recycled | scrap


class DeclaredOrigin(Base):
    """A lot declared from outside the system: what its declaration said beyond the lot's origin columns (the
    declarant, the certifications it named, the mine's name), and the named mine's latest answer (confirmed or
    disputed, note, event, by, at). Written from events (an upsert per lot); a replay rebuilds it."""

    __tablename__ = "declared_origins"

    lot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    declared: Mapped[Any] = mapped_column(JSONB, nullable=True)
    answer: Mapped[Any] = mapped_column(JSONB, nullable=True)


class LotHolder(Base):
    """Everyone who holds or held a lot; `until`: null while it holds it, else when its buyer's receipt took the lot
    over (the receipt event's time: a former holder sees the flags raised on events up to then)."""

    __tablename__ = "lot_holders"
    __table_args__ = (Index("ix_lot_holders_participant", "participant_id"),)

    lot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    participant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (Index("ix_shipments_open", "status", "shipped_at"),)

    shipment_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lot_id: Mapped[str] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(Text)
    mass_kg: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    seal: Mapped[str | None] = mapped_column(Text)
    shipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_transit_days: Mapped[int | None] = mapped_column(Integer)
    transit_countries: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transit_regions: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))  # ISO 3166-2


class TransformationInput(Base):
    """A lot drawn into a transformation: a transformation's lots are stored once, n + m rows (`shared.genealogy`
    walks through them)."""

    __tablename__ = "transformation_inputs"
    __table_args__ = (Index("ix_transformation_inputs_lot", "lot_id", postgresql_include=["transformation_id"]),)

    transformation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the order given, from 0
    mass_kg: Mapped[Decimal | None] = mapped_column(Numeric(18, 3))  # drawn (null: projected before, until a replay)


class TransformationOutput(Base):
    """A lot a transformation made."""

    __tablename__ = "transformation_outputs"
    __table_args__ = (Index("ix_transformation_outputs_lot", "lot_id", postgresql_include=["transformation_id"]),)

    transformation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the order given, from 0


class Transformation(Base):
    __tablename__ = "transformations"
    __table_args__ = (Index("ix_transformations_actor", "actor", "occurred_at"),)

    transformation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    actor_kind: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outputs: Mapped[list[str]] = mapped_column(ARRAY(Text))
    event_id: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    custody_model: Mapped[str | None] = mapped_column(Text)  # `shared.vocab.CustodyModel` (ISO 22095); null: none


class Product(Base):
    """A participant's product (custody.product.registered / .updated): what its consumptions name."""

    __tablename__ = "products"
    __table_args__ = (Index("ix_products_owner", "owner"),)

    product_id: Mapped[str] = mapped_column(Text, primary_key=True)
    owner: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    gtin: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(Text)


class Consumption(Base):
    """A lot (part of it) consumed by its custodian (custody.lot.consumed), into a product (`product_id`) and/or as
    the free text it gave (`product`): the roots of the filings."""

    __tablename__ = "consumptions"
    __table_args__ = (
        Index("ix_consumptions_actor", "actor", "consumed_at"),
        Index("ix_consumptions_product", "product_id"),
    )

    consumption_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lot_id: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    product_id: Mapped[str | None] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(Text)
    mass_kg: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    consumed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(Text)


class Flag(Base):
    """One flag per (rule, cause): redelivery and replay cannot raise it twice. The id is derived from them too."""

    __tablename__ = "flags"
    __table_args__ = (
        UniqueConstraint("rule", "cause"),
        Index("ix_flags_status_severity", "status", "severity", "seq"),
        Index("ix_flags_lot_ids", "lot_ids", postgresql_using="gin"),
        Index("ix_flags_participants", "participants", postgresql_using="gin"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    rule: Mapped[str] = mapped_column(Text)
    cause: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(Text)
    lot_id: Mapped[str] = mapped_column(Text)
    lot_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    participants: Mapped[list[str]] = mapped_column(ARRAY(Text))
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[Any] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, server_default=text("'open'"))  # open | resolved | withdrawn
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)  # the resolution's note


class FlagDecision(Base):
    """What a person decided on a flag, one row each: an acknowledgement (a holder of an affected lot, once each),
    a response with evidence (a party the flag names), a resolution or a re-opening (a compliance officer). Written
    with its `audit.decisions` event; a replay never empties it and re-applies the topic into it by `id`. A flag's
    `status`, `resolved_by`, `resolved_at` and `note` follow its latest resolution or re-opening."""

    __tablename__ = "flag_decisions"
    __table_args__ = (
        Index("ix_flag_decisions_flag", "flag_id", "seq"),
        Index(
            "uq_flag_decisions_acknowledgement",
            "flag_id",
            "decided_by",
            unique=True,
            postgresql_where=text("kind = 'acknowledge'"),
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    flag_id: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(Text)
    cause: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # acknowledge | respond | resolve | reopen
    decided_by: Mapped[str] = mapped_column(Text)
    decided_by_kind: Mapped[str] = mapped_column(Text)  # a participant kind, or `officer`
    authority: Mapped[Any] = mapped_column(JSONB)  # what allowed it: {"as": "holder", "lots": [...]}, ...
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[Any] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


class FlagEvidence(Base):
    """An evidence a flag had before it was judged again (reference data known before its custody event reached
    audit after it): the evidence and summary replaced, and when. Keyed by the id of the `audit.flag.updated` event
    that announced the change; a replay never empties it. The flag itself holds the current evidence."""

    __tablename__ = "flag_evidence_history"
    __table_args__ = (Index("ix_flag_evidence_history_flag", "flag_id", "seq"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    flag_id: Mapped[str] = mapped_column(Text)
    evidence: Mapped[Any] = mapped_column(JSONB)
    summary: Mapped[str] = mapped_column(Text)
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


from audit import corrections_models  # noqa: E402, F401  (custody corrections, issue 26)
