"""The capture job as the EPCIS 2.0 REST binding shows it (`GET /capture/{captureID}`), with our counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

_JOB_EXAMPLE: Any = {
    "captureID": "CAP-5E0C3A9B1D2F4711",
    "createdAt": "2026-12-06T06:00:00Z",
    "finishedAt": "2026-12-06T06:00:01Z",
    "running": False,
    "success": False,
    "captureErrorBehaviour": "proceed",
    "errors": [
        {
            "eventIndex": 3,
            "eventID": "ni:///sha-256;1f0c...",
            "exception": "epcisException:ValidationException",
            "detail": "custody masses are in kilograms (uom 'KGM'); got 'LBR'",
            "pointer": "/epcisBody/eventList/3/quantityList/0/uom",
        }
    ],
    "eventCount": 4,
    "applied": 2,
    "stored": 1,
}


class CaptureError(BaseModel):
    """An event that could not be captured: its index in the document, its eventID, the standard's exception type,
    what is wrong and where (a JSON pointer into the document)."""

    event_index: int | None = Field(None, alias="eventIndex")
    event_id: str | None = Field(None, alias="eventID")
    exception: str
    detail: str
    pointer: str | None = None


class CaptureJob(BaseModel):
    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [_JOB_EXAMPLE]})

    capture_id: str = Field(alias="captureID")
    created_at: datetime = Field(alias="createdAt")
    finished_at: datetime | None = Field(None, alias="finishedAt")
    running: bool
    success: bool
    capture_error_behaviour: str = Field(alias="captureErrorBehaviour", description="rollback or proceed")
    errors: list[CaptureError]
    event_count: int = Field(alias="eventCount", description="Events in the document")
    applied: int = Field(description="Events that became custody operations")
    stored: int = Field(description="Events stored (and queryable) that mean nothing to custody, each with a note")


class CaptureJobPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_JOB_EXAMPLE], "next_cursor": None}]})

    items: list[CaptureJob]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next (older) page")


def job_out(r: Any) -> dict[str, Any]:
    """A `capture_jobs` row as the REST binding's capture job (by alias)."""
    errors = r["errors"]
    if isinstance(errors, str | bytes):
        errors = orjson.loads(errors)
    return CaptureJob.model_validate(
        {
            "captureID": r["job_id"],
            "createdAt": r["created_at"],
            "finishedAt": r["finished_at"],
            "running": r["status"] == "running",
            "success": r["status"] == "succeeded",
            "captureErrorBehaviour": r["error_behaviour"],
            "errors": errors,
            "eventCount": r["event_count"],
            "applied": r["applied"],
            "stored": r["stored"],
        }
    ).model_dump(mode="json", by_alias=True)
