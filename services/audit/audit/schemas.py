"""Request and response models of the audit API (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from audit.rules import Rule, Severity
from shared.genealogy import Truncated

FLAG_EXAMPLE: dict[str, Any] = {
    "id": "1f0e7c52-9d1a-5c57-a3c4-0d9b1e6f2a77",
    "rule": "seal_mismatch",
    "cause": "SHP-8F3A",
    "severity": "high",
    "lot_id": "ITSCI-CD-0042137",
    "lot_ids": ["ITSCI-CD-0042137"],
    "participants": ["mine-id", "trader-id"],
    "summary": "Seal 'S-2' found on arrival; 'S-1' was applied at shipment",
    "evidence": {"event_id": "3c1e...", "shipment_id": "SHP-8F3A", "shipped_seal": "S-1", "received_seal": "S-2"},
    "status": "open",
    "raised_at": "2026-11-24T14:00:01Z",
    "acknowledged_by": None,
    "acknowledged_at": None,
    "resolved_by": None,
    "resolved_at": None,
    "note": None,
}


class Flag(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [FLAG_EXAMPLE]})

    id: str
    rule: Rule
    cause: str = Field(description="What the flag is about (one flag per rule and cause)")
    severity: Severity
    lot_id: str
    lot_ids: list[str] = Field(description="Every lot this cause concerns")
    participants: list[str]
    summary: str
    evidence: dict[str, Any] = Field(description="The event ids and values that triggered it")
    status: Literal["open", "acknowledged", "resolved"]
    raised_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    note: str | None


class FlagPage(BaseModel):
    items: list[Flag]
    next_cursor: str | None = None


Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Acknowledge(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "Asked the trader for the weighbridge ticket"}]}
    )

    note: Note | None = None


class Resolve(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"note": "Weighbridge ticket shows 1,248 kg; moisture loss in transit, accepted"}]
        },
    )

    note: Note = Field(description="Required: what was found and decided")


class Exposure(BaseModel):
    lot_id: str = Field(description="The upstream lot the flag is on")
    depth: int = Field(description="Steps upstream from the lot asked about")
    flag: Flag


class SmelterPassed(BaseModel):
    participant_id: str
    kind: str
    transformation_id: str
    occurred_at: datetime
    rmap_status_then: str | None = Field(description="RMAP status on the day of the transformation")


class Origin(BaseModel):
    lot_id: str
    kind: str
    participant_id: str | None
    country: str | None
    region: str | None
    mining_type: str | None


class RiskSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "SN-2026-0001",
                    "rating": "critical",
                    "own_flags": [],
                    "inherited": [],
                    "origins": [
                        {
                            "lot_id": "ITSCI-CD-0042137",
                            "kind": "mine",
                            "participant_id": "mine-id",
                            "country": "CD",
                            "region": "CD-SK",
                            "mining_type": "asm",
                        }
                    ],
                    "origin_countries": ["CD"],
                    "smelters": [],
                    "upstream_lots": 2,
                }
            ]
        }
    )

    lot_id: str
    rating: Literal["none", "info", "low", "medium", "high", "critical"] = Field(
        description="The highest severity among the lot's own and inherited flags that are not resolved"
    )
    own_flags: list[Flag]
    inherited: list[Exposure] = Field(description="Flags on upstream lots: the exposure this lot carries")
    origins: list[Origin]
    origin_countries: list[str]
    smelters: list[SmelterPassed]
    upstream_lots: int
    truncated: Truncated | None = Field(
        None,
        description="Null when the summary saw the whole upstream genealogy. Else where and why it stopped: it "
        "walked `max_depth` steps (`TRACE_MAX_DEPTH`) and the genealogy goes on from `at_lots`, whose own upstream "
        "(origins, smelters, flags) is not in this summary; ask for one of them to see further.",
    )
