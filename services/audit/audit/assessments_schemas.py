"""Response models of audit's self-assessment view (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Score = Annotated[float, Field(ge=0, le=100)]
PARTICIPANT_ID = "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"


class StepScores(BaseModel):
    """The score of each OECD step, 0..100; null: nothing in the step counted (all answered `na`)."""

    model_config = ConfigDict(extra="forbid")

    policy: Score | None
    risk_identification: Score | None
    risk_response: Score | None
    audit: Score | None
    reporting: Score | None


class Latest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assessment_id: str
    submitted_at: datetime
    questionnaire_version: str
    scores: StepScores
    total: Score


class TrendPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assessment_id: str
    submitted_at: datetime
    total: Score
    change: float | None = Field(description="Since the submission before it; null for the first one")


_EXAMPLE: dict[str, Any] = {
    "participant_id": PARTICIPANT_ID,
    "latest": {
        "assessment_id": "0f3a9c55-7b1d-4e0a-9d7e-2c4b6a8e1f90",
        "submitted_at": "2026-12-06T09:00:00Z",
        "questionnaire_version": "2026-12",
        "scores": {
            "policy": 85.7,
            "risk_identification": 72.7,
            "risk_response": 100.0,
            "audit": 58.3,
            "reporting": 60.0,
        },
        "total": 75.3,
    },
    "change_since_previous": 12.5,
    "trend": [
        {
            "assessment_id": "5a1e2d3c-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
            "submitted_at": "2026-06-01T09:00:00Z",
            "total": 62.8,
            "change": None,
        },
        {
            "assessment_id": "0f3a9c55-7b1d-4e0a-9d7e-2c4b6a8e1f90",
            "submitted_at": "2026-12-06T09:00:00Z",
            "total": 75.3,
            "change": 12.5,
        },
    ],
}


class SelfAssessmentView(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    participant_id: str
    latest: Latest | None = Field(description="The newest submission; null when it has submitted none")
    change_since_previous: float | None = Field(
        description="The latest total minus the previous one; null with fewer than two submissions"
    )
    trend: list[TrendPoint] = Field(description="The totals of the last eight submissions, oldest first")
