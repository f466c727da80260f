"""The `corrections` table: one row per corrected event (the event itself is never edited nor deleted)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, DateTime, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from custody.db import Base


class Correction(Base):
    """A correction of one event of a lot's chain: the correcting event (`custody.event.corrected`, also on the
    chain) by id, and what it says. `event_id` is unique: an event is corrected at most once."""

    __tablename__ = "corrections"

    correction_id: Mapped[str] = mapped_column(Text, primary_key=True)  # the correcting event's id
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.lot_id"))
    seq: Mapped[int] = mapped_column(Integer)  # the correcting event's seq
    event_id: Mapped[str] = mapped_column(Text, unique=True)  # the event corrected
    corrected_type: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)  # did_not_occur | incorrect_data
    note: Mapped[str] = mapped_column(Text)
    corrective_event_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    declared_by: Mapped[str] = mapped_column(Text)
    declared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effect: Mapped[str] = mapped_column(Text)  # voided_shipment | recorded
    shipment_id: Mapped[str | None] = mapped_column(Text)
