"""The grievance tables (`audit.models` imports them, so the metadata and the migrations see them): what was filed,
the filer's contact apart (personal data, erasable), and every triage decision. A replay empties none of them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, ForeignKey, Identity, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from audit.db import Base


class Grievance(Base):
    """A grievance as filed, without the filer's contact: about a participant (`participant_id`, as the filer gave
    it, never checked) or a named site (`site_name`, `country`, `region`), what happened, where, when. The receipt
    code is kept as its SHA-256 hash only. `status` and `public_note` are what the filer sees by the code."""

    __tablename__ = "grievances"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    receipt_hash: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(Text, server_default=text("'received'"))
    participant_id: Mapped[str | None] = mapped_column(Text)
    site_name: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    what: Mapped[str] = mapped_column(Text)
    place: Mapped[str | None] = mapped_column(Text)
    occurred_from: Mapped[date] = mapped_column(Date)
    occurred_to: Mapped[date] = mapped_column(Date)
    anonymous: Mapped[bool] = mapped_column(Boolean)
    filed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    public_note: Mapped[str | None] = mapped_column(Text)
    contact_erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GrievanceContact(Base):
    """The filer's contact details: personal data, seen by the operator only, never in an event, a log or a flag.
    Erasing them deletes this row (and marks `grievances.contact_erased_at`)."""

    __tablename__ = "grievance_contacts"

    grievance_id: Mapped[str] = mapped_column(Text, ForeignKey("grievances.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)


class GrievanceTriage(Base):
    """A triage decision by the operator (under_review, dismissed, substantiated with the participant, the period and
    the severity it established), each also published on `audit.decisions` (a replay re-applies it)."""

    __tablename__ = "grievance_triages"
    __table_args__ = (Index("ix_grievance_triages_grievance", "grievance_id", "seq"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    grievance_id: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(Text)
    participant_id: Mapped[str | None] = mapped_column(Text)
    period_from: Mapped[date | None] = mapped_column(Date)
    period_to: Mapped[date | None] = mapped_column(Date)
    severity: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
