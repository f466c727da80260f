"""The self-assessment table (`registry.models` imports it, so the metadata and the migrations see it): each
submission kept whole, answers (with the participant's comments and evidence links) and the scores computed when it
was submitted. Never changed: a new submission is a new row, so the rows are the history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Numeric, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from registry.db import Base


class SelfAssessment(Base):
    """One submitted self-assessment: who it is about, who submitted it (the participant or the operator), the
    questionnaire version, the answers as given, the score per OECD step, the total and the CMRT answers."""

    __tablename__ = "self_assessments"
    __table_args__ = (Index("ix_self_assessments_participant", "participant_id", "seq"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)  # newest first by it
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    questionnaire_version: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_by: Mapped[str] = mapped_column(Text)
    answers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    scores: Mapped[dict[str, Any]] = mapped_column(JSONB)
    total: Mapped[Decimal] = mapped_column(Numeric(4, 1))
    cmrt_answers: Mapped[dict[str, Any]] = mapped_column(JSONB)
