"""The custody service's tables. The schema is defined here (and migrated by Alembic); the hot write paths use
pre-built SQL on the asyncpg connection (custody/repository.py), which is 4x cheaper in CPU than the ORM."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from custody.db import Base
from shared.db import DeadLetterMixin, OutboxMixin, ProcessedEventMixin

MASS = Numeric(18, 3)


class OutboxEvent(OutboxMixin, Base):
    """Events waiting for (or already given to) Kafka; written in the same transaction as the change they record."""


class DeadLetter(DeadLetterMixin, Base):
    """Outbox rows the broker can never take, with the reason; the relay went on without them (shared.relay)."""


class ProcessedEvent(ProcessedEventMixin, Base):
    """Registry events applied to the participants projection."""


class Participant(Base):
    """What custody knows of participants, from `registry.events` (never from the registry's tables)."""

    __tablename__ = "participants"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    mining_type: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
    # who may learn its identity (`shared.vocab.Disclosure`); null: none on record, the default
    disclosure: Mapped[str | None] = mapped_column(Text)
    rmi_smelter_id: Mapped[str | None] = mapped_column(Text)  # a smelter's or refiner's RMI facility id
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The participant's lot-id prefix: the lots it creates are `<lot_prefix>:<local id>` (custody.consumer assigns it).
    lot_prefix: Mapped[str] = mapped_column(Text, unique=True)
    gln: Mapped[str | None] = mapped_column(Text, index=True)  # from the registry events' identifiers.gln (capture)


class Lot(Base):
    __tablename__ = "lots"
    __table_args__ = (
        Index("ix_lots_custodian", "custodian", "created_seq"),
        Index("ix_lots_mineral_status", "mineral", "status", "created_seq"),
    )

    lot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    mineral: Mapped[str] = mapped_column(Text)
    form: Mapped[str] = mapped_column(Text)
    mass_kg: Mapped[Decimal] = mapped_column(MASS)
    remaining_kg: Mapped[Decimal] = mapped_column(MASS)
    status: Mapped[str] = mapped_column(Text)
    custodian: Mapped[str] = mapped_column(Text)
    origin_kind: Mapped[str] = mapped_column(Text)
    origin_participant: Mapped[str | None] = mapped_column(Text)
    origin_country: Mapped[str | None] = mapped_column(Text)
    origin_region: Mapped[str | None] = mapped_column(Text)
    origin_mine_name: Mapped[str | None] = mapped_column(Text)
    origin_mining_type: Mapped[str | None] = mapped_column(Text)
    produced_by: Mapped[str | None] = mapped_column(Text)  # an ASM group that produced a titleholder's lot
    origin_source: Mapped[str | None] = mapped_column(Text)  # a recycled origin lot's: recycled | scrap
    origin_description: Mapped[str | None] = mapped_column(Text)  # a recycled origin lot's, as registered
    produced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tag: Mapped[str | None] = mapped_column(Text)
    seal: Mapped[str | None] = mapped_column(Text)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary)
    event_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OriginConfirmation(Base):
    """The answer of the mine a declaration from outside the system named (`POST /lots/{lot_id}/origin-confirmation`):
    confirmed or disputed, the latest answer (each is also an event on the lot's chain)."""

    __tablename__ = "origin_confirmations"

    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"), primary_key=True)
    mine: Mapped[str] = mapped_column(Text)
    confirmed: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(Text)


class LotHolder(Base):
    """Everyone who held a lot at some point (read access: a participant reads what it holds or held)."""

    __tablename__ = "lot_holders"
    __table_args__ = (Index("ix_lot_holders_participant", "participant_id", "lot_id"),)

    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"), primary_key=True)
    participant_id: Mapped[str] = mapped_column(Text, primary_key=True)


class LotEvent(Base):
    """A lot's custody history: a hash chain (each event's hash covers the previous one's)."""

    __tablename__ = "lot_events"
    __table_args__ = (
        UniqueConstraint("lot_id", "seq"),
        CheckConstraint("(recipe = 1 AND salts IS NULL) OR (recipe = 2 AND salts IS NOT NULL)", name="recipe_salts"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, unique=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSONB)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    # The hash recipe (docs/verification.md): 1, the event whole (before issue 24); 2, a salted digest per field.
    recipe: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    salts: Mapped[dict[str, str] | None] = mapped_column(JSONB)  # recipe 2: each field's salt (hex)


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (
        Index("ix_shipments_lot", "lot_id"),
        Index("ix_shipments_to", "to_participant", "status"),
        Index("ix_shipments_parties", "from_participant", "to_participant"),  # counterparties (disclosure)
    )

    shipment_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"))
    from_participant: Mapped[str] = mapped_column(Text)
    to_participant: Mapped[str] = mapped_column(Text)
    mass_kg: Mapped[Decimal] = mapped_column(MASS)
    shipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seal: Mapped[str | None] = mapped_column(Text)
    transit_countries: Mapped[list[str]] = mapped_column(ARRAY(Text))
    max_transit_days: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_mass_kg: Mapped[Decimal | None] = mapped_column(MASS)
    received_seal: Mapped[str | None] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(Text)  # the bag's tag as shipped (bag-and-tag)
    received_tag: Mapped[str | None] = mapped_column(Text)  # as found on arrival
    transit_regions: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))


class Transformation(Base):
    """One transformation; its lots are `transformation_inputs` and `transformation_outputs` (n + m rows)."""

    __tablename__ = "transformations"

    transformation_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    actor_kind: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    custody_model: Mapped[str | None] = mapped_column(Text)  # `shared.vocab.CustodyModel` (ISO 22095), if recorded


class TransformationInput(Base):
    """A lot drawn into a transformation, and the mass drawn (`shared.genealogy` walks through these rows)."""

    __tablename__ = "transformation_inputs"
    __table_args__ = (Index("ix_transformation_inputs_lot", "lot_id", postgresql_include=["transformation_id"]),)

    transformation_id: Mapped[str] = mapped_column(ForeignKey("transformations.transformation_id"), primary_key=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the order given, from 0
    mass_kg: Mapped[Decimal] = mapped_column(MASS)


class TransformationOutput(Base):
    """A lot a transformation made (each lot is made by one transformation at most)."""

    __tablename__ = "transformation_outputs"
    __table_args__ = (
        Index("ix_transformation_outputs_lot", "lot_id", unique=True, postgresql_include=["transformation_id"]),
    )

    transformation_id: Mapped[str] = mapped_column(ForeignKey("transformations.transformation_id"), primary_key=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the order given, from 0


class Product(Base):
    """A participant's product (`POST /products`): its id scoped like its lots (`<prefix>:<local id>`, the SKU), a
    name, a GTIN where known (one per owner), and the metal it is mostly about."""

    __tablename__ = "products"
    __table_args__ = (
        Index("ix_products_owner", "owner", "created_seq"),
        Index("ux_products_owner_gtin", "owner", "gtin", unique=True, postgresql_where=text("gtin IS NOT NULL")),
    )

    product_id: Mapped[str] = mapped_column(Text, primary_key=True)
    owner: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    gtin: Mapped[str | None] = mapped_column(Text)
    mineral: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Consumption(Base):
    __tablename__ = "consumptions"
    __table_args__ = (Index("ix_consumptions_lot", "lot_id"), Index("ix_consumptions_product", "product_id"))

    consumption_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"))
    actor: Mapped[str] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(Text)  # the free text (batch, note); null: a product_id only
    product_id: Mapped[str | None] = mapped_column(Text)  # the caller's registered product, if named
    mass_kg: Mapped[Decimal] = mapped_column(MASS)
    consumed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RejectedAttempt(Base):
    """Refused operations (409), kept and published so audit can see repeated attempts."""

    __tablename__ = "rejected_attempts"
    __table_args__ = (Index("ix_rejected_attempts_actor", "actor", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, unique=True)
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    request: Mapped[Any] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    """A request retried with the same Idempotency-Key gets the stored response instead of doing the work twice."""

    __tablename__ = "idempotency_keys"

    actor: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# The tables of EPCIS capture and of corrections (issue 26), defined in their own modules.
from custody import capture_models, corrections_models  # noqa: E402, F401
