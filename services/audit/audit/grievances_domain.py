"""Grievances, the pure part: receipt codes (made, hashed, compared), which triage may follow which status, and the
bounds on what is filed. No I/O.

A receipt code is a secret shown once, to the filer: 32 random bytes (256 bits), URL-safe base64, prefixed `GRV-` so
that it is recognisable. Only its SHA-256 is stored (like the service's tokens); with that much entropy a hash without
salt cannot be reversed by guessing, and it lets the code be looked up by an index. The looked-up hash is compared
again in constant time (`same_code`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import date
from enum import StrEnum

RECEIPT_PREFIX = "GRV-"
RECEIPT_BYTES = 32
RECEIPT_MAX_LENGTH = 100  # what a status look-up accepts (a real code is 47 characters)
MAX_PERIOD_DAYS = 3_660  # a grievance's "when", and a substantiated period: ten years at most
EARLIEST = date(1900, 1, 1)


class GrievanceStatus(StrEnum):
    received = "received"
    under_review = "under_review"
    dismissed = "dismissed"
    substantiated = "substantiated"


FINAL = frozenset({GrievanceStatus.dismissed, GrievanceStatus.substantiated})


class TriageRefused(Exception):
    """A triage the grievance's status does not allow (a decided grievance stays decided)."""


def new_receipt_code() -> str:
    return RECEIPT_PREFIX + secrets.token_urlsafe(RECEIPT_BYTES)


def receipt_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def same_code(stored_hash: str | None, code: str) -> bool:
    """Whether `code` is the one whose hash is `stored_hash`, compared in constant time (a dummy comparison when
    there is none, so an unknown code takes as long as a wrong one)."""
    given = receipt_hash(code)
    return hmac.compare_digest(stored_hash or "0" * len(given), given) and stored_hash is not None


def check_triage(grievance_id: str, status: str, decision: GrievanceStatus) -> None:
    """`received` may go to any decision, `under_review` to a final one; a dismissed or substantiated grievance is
    decided (a second decision would leave flags nobody can explain): `TriageRefused`."""
    if decision == GrievanceStatus.received:
        raise TriageRefused("`received` is where a grievance starts, not a decision")
    if status in FINAL:
        raise TriageRefused(f"Grievance {grievance_id} is {status} already; a decided grievance stays decided.")
    if status == GrievanceStatus.under_review and decision == GrievanceStatus.under_review:
        raise TriageRefused(f"Grievance {grievance_id} is under review already.")


def period_problem(start: date, end: date, *, today: date) -> str | None:
    """What is wrong with a period (a grievance's "when", a substantiated period), or None."""
    if end < start:
        return "ends before it starts"
    if start < EARLIEST:
        return f"starts before {EARLIEST.isoformat()}"
    if start > today:
        return "starts in the future"
    if (end - start).days > MAX_PERIOD_DAYS:
        return f"is longer than {MAX_PERIOD_DAYS} days"
    return None
