"""The `corrections` table: the custody corrections audit received (`custody.event.corrected`), one row each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, DateTime, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from audit.db import Base


class Correction(Base):
    """A custody correction as audit keeps it (`audit.corrections_domain.Correction`): which event of which lot, why,
    who declared it and when, what it did (a shipment voided, or the record marked only). Written by the projection
    with ON CONFLICT DO NOTHING: a replay writes the same rows again, changing nothing."""

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_lot_id", "lot_id"),)

    correction_id: Mapped[str] = mapped_column(Text, primary_key=True)  # the correcting event's id
    lot_id: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)  # the event corrected
    corrected_type: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)
    declared_by: Mapped[str] = mapped_column(Text)
    declared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effect: Mapped[str] = mapped_column(Text)
    shipment_id: Mapped[str | None] = mapped_column(Text)
    corrective_event_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
