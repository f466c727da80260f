"""The audit service's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from audit.db import Base
from shared.db import OutboxMixin, ProcessedEventMixin


class OutboxEvent(OutboxMixin, Base):
    """Flags waiting for (or already given to) Kafka's `audit.flags`."""


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
    data: Mapped[Any] = mapped_column(JSONB)
    topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
