"""Request and response models of the grievance endpoints (pydantic v2), with examples for the OpenAPI.

Every text is bounded as sent (`shared.text.as_sent_at_most`), then stripped; NUL characters are refused (422)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from audit.grievances_domain import RECEIPT_MAX_LENGTH
from audit.schemas import NoNul
from shared.iso import country_validator
from shared.text import as_sent_at_most

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), as_sent_at_most(100), NoNul]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), as_sent_at_most(200), NoNul
]
What = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000), as_sent_at_most(4000), NoNul
]
Place = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), as_sent_at_most(500), NoNul
]
PublicNote = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), as_sent_at_most(1000), NoNul
]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"),
    as_sent_at_most(254),
    NoNul,
]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=40, pattern=r"^[0-9+()./ -]+$"),
    as_sent_at_most(40),
]
Country = Annotated[str, StringConstraints(min_length=2, max_length=2), AfterValidator(country_validator)]
Region = Name  # as the filer calls it (a province, a district): free text
Status = Literal["received", "under_review", "dismissed", "substantiated"]

_FILE_EXAMPLE: dict[str, Any] = {
    "about": {"site_name": "Kalimbi pits, Nyabibwe", "country": "CD", "region": "South Kivu"},
    "what": "Children carrying ore bags at the washing site; guards took a share of each bag at the road block.",
    "where": "Washing site below the Kalimbi pits, road block on the Nyabibwe road",
    "when": {"from": "2026-09-01", "to": "2026-10-15"},
    "anonymous": True,
}


class About(BaseModel):
    """Whom or what the grievance is about: a participant's id when the filer knows it, else a site's name and
    country (and region, in its own words, if known). The id is kept as given: whether it exists is never said."""

    model_config = ConfigDict(extra="forbid")

    participant_id: Id | None = None
    site_name: Name | None = None
    country: Country | None = None
    region: Region | None = Field(None, description="The province or district, in the filer's words")

    @model_validator(mode="after")
    def _named(self) -> About:
        if self.participant_id is None and (self.site_name is None or self.country is None):
            raise ValueError("name a participant_id, or a site_name with its country")
        return self


class Period(BaseModel):
    """When it happened: a day (`from` only) or a period, both days included, at most 3,660 days (ten years)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: date = Field(alias="from")
    to: date | None = None

    @property
    def end(self) -> date:
        return self.to or self.from_


class Contact(BaseModel):
    """How the operator may reach the filer (personal data: the operator alone sees it, and it can be erased)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None


class FileGrievance(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_FILE_EXAMPLE]})

    about: About
    what: What = Field(description="What happened (at most 4,000 characters)")
    where: Place | None = Field(None, description="Where it happened (at most 500 characters)")
    when: Period
    contact: Contact | None = Field(None, description="Optional; never stored when `anonymous` is true")
    anonymous: bool = Field(
        False, description="The operator sees no identity: a contact sent along is not stored (the answer says so)"
    )


class Filed(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "receipt_code": "GRV-q3V0o1d2b9cK6fY1nQ8mZ4tR7uW5xE2aH0jL3pS6vB",
                    "status": "received",
                    "filed_at": "2026-11-30T09:12:44Z",
                    "contact_stored": False,
                }
            ]
        }
    )

    receipt_code: str = Field(
        description="Keep it: shown this once, never again (only its hash is kept). Follow the grievance with it: "
        "`POST /grievances/status`"
    )
    status: Status
    filed_at: datetime
    contact_stored: bool = Field(description="Whether contact details were kept (never when anonymous)")


class StatusQuery(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"receipt_code": "GRV-q3V0o1d2b9cK6fY1nQ8mZ4tR7uW5xE2aH0jL3pS6vB"}]},
    )

    receipt_code: Annotated[str, StringConstraints(min_length=1, max_length=RECEIPT_MAX_LENGTH)]


class PublicStatus(BaseModel):
    """What the filer sees of its grievance: its status, dates and the operator's public note; nothing else."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "substantiated",
                    "filed_at": "2026-11-30T09:12:44Z",
                    "updated_at": "2026-12-03T16:00:00Z",
                    "public_note": "Confirmed by a site visit; the operator's lots of that period are flagged.",
                }
            ]
        }
    )

    status: Status
    filed_at: datetime
    updated_at: datetime
    public_note: str | None


class Triage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "decision": "substantiated",
                    "note": "Confirmed by a site visit on 2026-11-20; lots of that period are flagged.",
                    "participant_id": "7d4f2c1e-0b3a-4e59-8f61-2a9c0d3b4e5f",
                    "period_from": "2026-09-01",
                    "period_to": "2026-10-15",
                    "severity": "high",
                },
                {"decision": "dismissed", "note": "The site named was closed in 2024; nothing to act on."},
            ]
        },
    )

    decision: Literal["under_review", "dismissed", "substantiated"]
    note: PublicNote | None = Field(
        None,
        description="The operator's public note: the filer reads it, and a substantiated grievance's flags carry it "
        "(write no one's personal data here)",
    )
    participant_id: Id | None = Field(None, description="Substantiated: the participant or site, as established")
    period_from: date | None = None
    period_to: date | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Triage:
        needed = ("participant_id", "period_from", "period_to", "severity")
        if self.decision == "substantiated":
            missing = [k for k in needed if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a substantiated grievance needs {', '.join(missing)}")
        elif any(getattr(self, k) is not None for k in needed):
            raise ValueError(f"{', '.join(needed)} are for a substantiated grievance only")
        return self


class ContactOut(BaseModel):
    name: str | None
    email: str | None
    phone: str | None


class TriageOut(BaseModel):
    id: str
    decision: Status
    participant_id: str | None
    period_from: date | None
    period_to: date | None
    severity: str | None
    note: str | None
    decided_by: str
    decided_at: datetime


_GRIEVANCE_EXAMPLE: dict[str, Any] = {
    "id": "5b0c8a4e-2f61-4d7a-9e13-0c4b6a8d2f17",
    "status": "received",
    "participant_id": None,
    "site_name": "Kalimbi pits, Nyabibwe",
    "country": "CD",
    "region": "South Kivu",
    "what": _FILE_EXAMPLE["what"],
    "where": _FILE_EXAMPLE["where"],
    "occurred_from": "2026-09-01",
    "occurred_to": "2026-10-15",
    "anonymous": True,
    "filed_at": "2026-11-30T09:12:44Z",
    "updated_at": "2026-11-30T09:12:44Z",
    "public_note": None,
    "contact": None,
    "contact_erased_at": None,
    "triages": [],
}


class GrievanceOut(BaseModel):
    """A grievance as the operator sees it: everything filed, the contact (when one was kept and not erased) and
    every triage decision."""

    model_config = ConfigDict(json_schema_extra={"examples": [_GRIEVANCE_EXAMPLE]})

    id: str
    status: Status
    participant_id: str | None
    site_name: str | None
    country: str | None
    region: str | None
    what: str
    where: str | None
    occurred_from: date
    occurred_to: date
    anonymous: bool
    filed_at: datetime
    updated_at: datetime
    public_note: str | None
    contact: ContactOut | None
    contact_erased_at: datetime | None
    triages: list[TriageOut]


class GrievancePage(BaseModel):
    items: list[GrievanceOut]
    next_cursor: str | None = None
