"""The tables of EPCIS capture (migration `c0570d10000c`): capture jobs, the events captured, lots' EPC classes.

`participants.gln` (the GLN a participant's registry events name) is a column of `custody.models.Participant`'s
table, added by the same migration; capture reads it with SQL (custody/capture_repository.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from custody.db import Base


class CaptureJob(Base):
    """One `POST /capture`: running, then succeeded or failed, with an error per event that failed."""

    __tablename__ = "capture_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
        CheckConstraint("error_behaviour IN ('rollback', 'proceed')", name="error_behaviour"),
        UniqueConstraint("actor", "key", name="uq_capture_jobs_actor_key"),
        Index("ix_capture_jobs_actor_created", "actor", "created_at"),
        Index("uq_capture_jobs_running", "actor", unique=True, postgresql_where=text("status = 'running'")),
    )

    job_id: Mapped[str] = mapped_column(Text, primary_key=True)
    actor: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    error_behaviour: Mapped[str] = mapped_column(Text)
    event_count: Mapped[int] = mapped_column(Integer)
    applied: Mapped[int] = mapped_column(Integer, server_default="0")
    stored: Mapped[int] = mapped_column(Integer, server_default="0")
    errors: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    owner: Mapped[str | None] = mapped_column(Text)  # the process running it (`capture.INSTANCE`)
    alive_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())  # renewed by it


class EpcisEvent(Base):
    """An EPCIS event as captured (`body`, as sent), what it names and what it became in custody."""

    __tablename__ = "epcis_events"
    __table_args__ = (
        CheckConstraint("outcome IN ('applied', 'stored', 'correction')", name="outcome"),
        UniqueConstraint("actor", "event_id", name="uq_epcis_events_actor_event_id"),
        Index("ix_epcis_events_event_time", "event_time", "id"),
        Index("ix_epcis_events_epcs", "epcs", postgresql_using="gin"),
        Index("ix_epcis_events_lot_ids", "lot_ids", postgresql_using="gin"),
        Index("ix_epcis_events_custody_event_ids", "custody_event_ids", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    actor: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    event_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    record_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    biz_step: Mapped[str | None] = mapped_column(Text)
    biz_location: Mapped[str | None] = mapped_column(Text)
    epcs: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    lot_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    custody_event_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    outcome: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)


class LotEpc(Base):
    """The LGTIN (`shared.epc.lgtin_key`) a captured commissioning bound to the lot it registered."""

    __tablename__ = "lot_epcs"
    __table_args__ = (
        UniqueConstraint("registrant", "epc", name="uq_lot_epcs_registrant_epc"),
        Index("ix_lot_epcs_epc", "epc"),
    )

    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"), primary_key=True)
    epc: Mapped[str] = mapped_column(Text)
    registrant: Mapped[str] = mapped_column(Text)
