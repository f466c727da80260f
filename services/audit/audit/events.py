"""The data of the events audit publishes on `audit.flags`, and their catalogue (`AUDIT_EVENTS`).

A flag is raised by the projection (`audit.projection.flags.FlagBatch.docs` builds its data) and decided through
the API (`router.py` publishes the flag as `GET /flags/{flag_id}` then shows it). These models describe that data
exactly (unknown fields are refused), the AsyncAPI document at `/asyncapi.json` is generated from them, and
`tests/shared/test_asyncapi.py` checks a raised flag's data, as the projection builds it, against them.

Every event is keyed by the lot the flag is on (`lot_id`), so a lot's flags keep their order; `ce_subject` is the
flag id.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from audit import schemas
from audit.rules import Rule, Severity
from shared import topics
from shared.asyncapi import EventType

_DECISION_FIELDS = ("acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "note")
_RAISED: dict[str, Any] = {k: v for k, v in schemas.FLAG_EXAMPLE.items() if k not in _DECISION_FIELDS}
_ACKNOWLEDGED: dict[str, Any] = {
    **schemas.FLAG_EXAMPLE,
    "status": "acknowledged",
    "acknowledged_by": "trader-id",
    "acknowledged_at": "2026-11-24T15:10:00Z",
    "note": "Asked the trader for the weighbridge ticket",
}
_RESOLVED: dict[str, Any] = {
    **_ACKNOWLEDGED,
    "status": "resolved",
    "resolved_by": "operator",
    "resolved_at": "2026-11-26T09:00:00Z",
    "note": "Seal S-1 broken by customs at the border (report attached to the shipment); S-2 applied after "
    "inspection. Accepted.",
}


class FlagRaised(BaseModel):
    """A rule found a custody break or a high-risk origin: a new flag, open. There is one flag per rule and cause,
    so a redelivered or replayed event never raises a second one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_RAISED]})

    id: str = Field(description="The flag id, derived from rule and cause (a rebuilt projection gives the same)")
    rule: Rule
    cause: str = Field(description="What the flag is about (one flag per rule and cause), e.g. the shipment id")
    severity: Severity
    lot_id: str = Field(description="The lot the flag is on (the message key)")
    lot_ids: list[str] = Field(min_length=1, description="Every lot this cause concerns, `lot_id` first")
    participants: list[str] = Field(description="The participants concerned, sorted")
    summary: str = Field(description="What was found, in words")
    evidence: dict[str, Any] = Field(description="The event ids and values that triggered it")
    status: Literal["open"]
    raised_at: AwareDatetime = Field(description="When the flag was raised (as stored with the flag)")


class FlagAcknowledged(schemas.Flag):
    """Someone is on it (`POST /flags/{flag_id}/acknowledge`): the flag as it now is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_ACKNOWLEDGED]})

    status: Literal["acknowledged"]
    acknowledged_by: str = Field(description="Who acknowledged it: a participant id, or `operator`")
    acknowledged_at: AwareDatetime
    resolved_by: None
    resolved_at: None
    note: str | None = Field(description="The acknowledgement's note, if it gave one")


class FlagResolved(schemas.Flag):
    """The flag was resolved (`POST /flags/{flag_id}/resolve`), with a note saying what was decided: the flag as it
    now is. Nothing changes it afterwards."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_RESOLVED]})

    status: Literal["resolved"]
    resolved_by: str = Field(description="Who resolved it: a participant id, or `operator`")
    resolved_at: AwareDatetime
    note: str = Field(description="What was found and decided")


_KEY = "lot id the flag is on"
_SUBJECT = "flag id"

AUDIT_EVENTS: list[EventType] = [
    EventType(
        type="audit.flag.raised",
        topic=topics.AUDIT_FLAGS,
        key=_KEY,
        subject=_SUBJECT,
        summary="A rule raised a flag on a lot.",
        payload=FlagRaised,
    ),
    EventType(
        type="audit.flag.acknowledged",
        topic=topics.AUDIT_FLAGS,
        key=_KEY,
        subject=_SUBJECT,
        summary="A flag was acknowledged: someone is on it.",
        payload=FlagAcknowledged,
    ),
    EventType(
        type="audit.flag.resolved",
        topic=topics.AUDIT_FLAGS,
        key=_KEY,
        subject=_SUBJECT,
        summary="A flag was resolved, with a note saying what was decided.",
        payload=FlagResolved,
    ),
]
