"""The self-assessment projection (`audit.models` imports it, so the metadata and the migrations see it): each
`registry.self_assessment.submitted` as one row, written by the projection's batch statements (live and replay
alike). Read by the buyers' view (`GET /participants/{id}/self-assessment`) and by the CMRT's company-level answers
(the latest row per participant)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Index, Numeric, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from audit.db import Base


class SelfAssessment(Base):
    """A participant's due-diligence self-assessment as the registry published it: the score per OECD step
    (`{"policy": 0..100 | null, "risk_identification", "risk_response", "audit", "reporting"}`), the total (0..100)
    and the CMRT company-level answers (`{"A": {"answer": "Yes" | "No", "comment": str | null}, ...}`)."""

    __tablename__ = "self_assessments"
    __table_args__ = (Index("ix_self_assessments_participant", "participant_id", "submitted_at"),)

    assessment_id: Mapped[str] = mapped_column(Text, primary_key=True)
    participant_id: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    questionnaire_version: Mapped[str] = mapped_column(Text)
    scores: Mapped[dict[str, Any]] = mapped_column(JSONB)
    total: Mapped[Decimal] = mapped_column(Numeric(4, 1))
    cmrt_answers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    event_id: Mapped[str] = mapped_column(Text)
