"""Request and response models of corrections (`POST /lots/{lot_id}/corrections`, docs/corrections.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.text import as_sent_at_most

MAX_NOTE = 1000
"""Characters of a correction's note, as sent."""
MAX_CORRECTIVE_EVENTS = 20
"""Events one correction may name as saying what really happened."""


class CorrectionReason(StrEnum):
    """Why a record is corrected: EPCIS 2.0 `errorDeclaration.reason` (CBV 2.0 error reason), as our words."""

    did_not_occur = "did_not_occur"  # cbv:ER-did_not_occur: the event never happened
    incorrect_data = "incorrect_data"  # cbv:ER-incorrect_data: it happened, but something in it is wrong


class CorrectionEffect(StrEnum):
    """What a correction did to the lot's state (docs/corrections.md)."""

    voided_shipment = "voided_shipment"  # a shipment that did not occur, still in transit: back with its sender
    recorded = "recorded"  # the record is marked; new custody operations put the state right


EventId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NOTE), as_sent_at_most(MAX_NOTE)
]


class CorrectionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "0b4c8f5e-2d1a-4f9e-9b7e-3c2a1d0e5f03",
                    "reason": "did_not_occur",
                    "note": "Entered against the wrong lot: the truck left with lot BAG-1183, not this one.",
                    "corrective_event_ids": [],
                }
            ]
        },
    )

    event_id: EventId = Field(
        description="The event to correct: the `event_id` of an event on this lot's chain, as its history shows it, "
        "that you recorded (its actor)"
    )
    reason: CorrectionReason = Field(
        description="`did_not_occur`: it never happened; `incorrect_data`: it happened, but its data is wrong "
        "(EPCIS errorDeclaration reasons)"
    )
    note: Note = Field(description=f"Why, in words: at most {MAX_NOTE} characters as sent")
    corrective_event_ids: list[EventId] = Field(
        default_factory=list,
        max_length=MAX_CORRECTIVE_EVENTS,
        description=f"Events you recorded that say what really happened (at most {MAX_CORRECTIVE_EVENTS}, each "
        "once), e.g. the shipment recorded again with the right mass",
    )


class Correction(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "correction_id": "5d0f3b52-8f1e-4f4e-9a3c-1b7e2d6c9a10",
                    "lot_id": "K7Q2M9XA:ITSCI-CD-0042137",
                    "seq": 4,
                    "event_id": "0b4c8f5e-2d1a-4f9e-9b7e-3c2a1d0e5f03",
                    "corrected_type": "custody.lot.shipped",
                    "reason": "did_not_occur",
                    "note": "Entered against the wrong lot: the truck left with lot BAG-1183, not this one.",
                    "corrective_event_ids": [],
                    "declared_by": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    "declared_at": "2026-11-21T09:12:00Z",
                    "effect": "voided_shipment",
                    "shipment_id": "SHP-0F3A9C2E7B1D4A68",
                }
            ]
        }
    )

    correction_id: str = Field(description="The correcting event's id (`custody.event.corrected` on the chain)")
    lot_id: str
    seq: int = Field(description="The correcting event's place in the lot's chain")
    event_id: str = Field(description="The event corrected (it stays on the chain, marked as corrected)")
    corrected_type: str = Field(description="Its type")
    reason: CorrectionReason
    note: str
    corrective_event_ids: list[str]
    declared_by: str = Field(description="Who declared the correction (the corrected event's actor)")
    declared_at: datetime
    effect: CorrectionEffect = Field(
        description="`voided_shipment`: a shipment declared `did_not_occur` while in transit was voided (the lot is "
        "active with its sender again, the shipment can no longer be received); `recorded`: the record is marked "
        "corrected and the lot's state is put right by new custody operations"
    )
    shipment_id: str | None = Field(description="The shipment the corrected event was about, if any")


class CorrectionMark(BaseModel):
    """How a corrected event shows in a lot's history (`LotEvent.correction`): the correcting event that follows it
    on the chain, and what it says."""

    correction_id: str
    reason: CorrectionReason
    note: str | None = Field(description="Null when withheld from you")
    declared_by: str | None = Field(description="Null when withheld from you")
    declared_at: datetime
    effect: CorrectionEffect
    corrective_event_ids: list[str]


CORRECTED: Literal["custody.event.corrected"] = "custody.event.corrected"
"""The correcting event's type."""
