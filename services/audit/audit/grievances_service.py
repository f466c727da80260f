"""Grievance use cases: filing (anyone, no account), following by receipt code, the operator's reading, triage and
erasing a contact. One transaction each, on the service's asyncpg pool.

What is kept apart: the filer's contact (`grievance_contacts`, the operator alone reads it; erasing it deletes the
row and marks `contact_erased_at`, nothing else changes) and the receipt code (only its hash). What leaves the
service: a triage, on `audit.decisions` (the participant, the period, the severity and the operator's public note;
never the filer's words nor its contact), which the projection turns into `substantiated_grievance` flags and a
replay re-applies. Logs name a grievance by its id only."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from audit import grievances_repository as repository
from audit import grievances_schemas as schemas
from audit.grievances_domain import (
    GrievanceStatus,
    TriageRefused,
    check_triage,
    new_receipt_code,
    period_problem,
    receipt_hash,
    same_code,
)
from shared.auth import Principal
from shared.events import new_event
from shared.outbox import outbox_committed
from shared.problems import Conflict, Forbidden, InvalidInput, NotFound

Pool: TypeAlias = asyncpg.Pool  # what the router hands over (it imports no driver itself)
SOURCE = "/audit"
TRIAGED = "audit.grievance.triaged"
log = logging.getLogger("audit.grievances")


def _today() -> date:
    return datetime.now(UTC).date()


async def file(*, pool: asyncpg.Pool, body: schemas.FileGrievance) -> schemas.Filed:
    """Record a grievance; the receipt code is returned this once. Nothing of anyone else's is read."""
    today = _today()
    start, end = body.when.from_, body.when.end
    if problem := period_problem(start, end, today=today):
        raise InvalidInput("body.when", f"the period {problem}")
    if end > today + timedelta(days=1):
        raise InvalidInput("body.when.to", "is in the future")
    contact = body.contact if body.contact is not None and not body.anonymous else None
    if contact is not None and not (contact.name or contact.email or contact.phone):
        contact = None
    code, now, gid = new_receipt_code(), datetime.now(UTC), str(uuid.uuid4())
    grievance: dict[str, Any] = {
        "id": gid,
        "receipt_hash": receipt_hash(code),
        "participant_id": body.about.participant_id,
        "site_name": body.about.site_name,
        "country": body.about.country,
        "region": body.about.region,
        "what": body.what,
        "place": body.where,
        "occurred_from": start,
        "occurred_to": end,
        "anonymous": body.anonymous,
        "filed_at": now,
    }
    async with pool.acquire() as conn, conn.transaction():
        await repository.insert_grievance(conn, grievance)
        if contact is not None:
            await repository.insert_contact(conn, gid, contact.name, contact.email, contact.phone)
    log.info("grievance %s filed", gid)
    return schemas.Filed(receipt_code=code, status="received", filed_at=now, contact_stored=contact is not None)


async def follow(*, pool: asyncpg.Pool, receipt_code: str) -> schemas.PublicStatus:
    """The public status of the grievance this code was given for; 404 alike for a wrong code and an unknown one."""
    async with pool.acquire() as conn:
        row = await repository.by_receipt(conn, receipt_hash(receipt_code))
    if not same_code(row["receipt_hash"] if row is not None else None, receipt_code) or row is None:
        raise NotFound("No grievance with this receipt code.")
    return schemas.PublicStatus(
        status=row["status"], filed_at=row["filed_at"], updated_at=row["updated_at"], public_note=row["public_note"]
    )


def _operator(who: Principal) -> None:
    if not who.is_operator:
        raise Forbidden("Grievances are read and triaged by the operator only (they may hold personal data).")


def _out(r: asyncpg.Record, contact: asyncpg.Record | None, triages: list[asyncpg.Record]) -> schemas.GrievanceOut:
    d: dict[str, Any] = dict(r)
    d.pop("seq", None)
    d["where"] = d.pop("place")
    d["contact"] = (
        schemas.ContactOut(name=contact["name"], email=contact["email"], phone=contact["phone"]) if contact else None
    )
    d["triages"] = [schemas.TriageOut.model_validate({**dict(t)}) for t in triages]
    return schemas.GrievanceOut.model_validate(d)


async def _full(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[schemas.GrievanceOut]:
    ids = [r["id"] for r in rows]
    contacts = await repository.contacts(conn, ids)
    triages = await repository.triages(conn, ids)
    return [_out(r, contacts.get(r["id"]), triages.get(r["id"], [])) for r in rows]


def _not_found(grievance_id: str) -> NotFound:
    return NotFound(f"No grievance {grievance_id!r}.")


async def list_grievances(
    *, pool: asyncpg.Pool, who: Principal, status: str | None, before_seq: int | None, limit: int
) -> schemas.GrievancePage:
    _operator(who)
    async with pool.acquire() as conn:
        rows = await repository.page(conn, status=status, before_seq=before_seq, limit=limit + 1)
        items = await _full(conn, rows[:limit])
    return schemas.GrievancePage(items=items, next_cursor=str(rows[limit - 1]["seq"]) if len(rows) > limit else None)


async def get_grievance(*, pool: asyncpg.Pool, who: Principal, grievance_id: str) -> schemas.GrievanceOut:
    _operator(who)
    async with pool.acquire() as conn:
        row = await repository.get(conn, grievance_id)
        if row is None:
            raise _not_found(grievance_id)
        return (await _full(conn, [row]))[0]


async def triage(
    *, pool: asyncpg.Pool, who: Principal, grievance_id: str, body: schemas.Triage
) -> schemas.GrievanceOut:
    """The operator's decision: under review, dismissed, or substantiated (the participant, the period, the
    severity). Recorded with its `audit.grievance.triaged` event in one transaction; a decided grievance stays
    decided (409)."""
    _operator(who)
    decision = GrievanceStatus(body.decision)
    if decision == GrievanceStatus.substantiated:
        assert body.period_from is not None and body.period_to is not None  # the model checks it
        if problem := period_problem(body.period_from, body.period_to, today=_today()):
            raise InvalidInput("body.period_to", f"the period {problem}")
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await repository.get(conn, grievance_id, for_update=True)
            if row is None:
                raise _not_found(grievance_id)
            try:
                check_triage(grievance_id, row["status"], decision)
            except TriageRefused as exc:
                raise Conflict(str(exc)) from exc
            if body.participant_id is not None and not await repository.participant_known(conn, body.participant_id):
                raise InvalidInput("body.participant_id", "is not a participant audit knows (from the registry)")
            t = {
                "id": str(uuid.uuid4()),
                "grievance_id": grievance_id,
                "decision": decision.value,
                "participant_id": body.participant_id,
                "period_from": body.period_from,
                "period_to": body.period_to,
                "severity": body.severity,
                "note": body.note,
                "decided_by": who.subject,
                "decided_at": now,
            }
            await repository.insert_triage(conn, t)
            await repository.set_status(conn, grievance_id, decision.value, body.note, now)
            await repository.publish_triage(
                conn, [new_event(TRIAGED, source=SOURCE, key=grievance_id, data=triage_data(t))]
            )
        outbox_committed()
        log.info("grievance %s triaged: %s", grievance_id, decision.value)
        row = await repository.get(conn, grievance_id)
        assert row is not None
        return (await _full(conn, [row]))[0]


def triage_data(t: dict[str, Any]) -> dict[str, Any]:
    """An `audit.grievance.triaged` event's data (`audit.events.GrievanceTriaged`): what the projection and a replay
    need, and nothing of the filer."""
    return {
        "triage_id": t["id"],
        "grievance_id": t["grievance_id"],
        "decision": t["decision"],
        "participant_id": t["participant_id"],
        "period_from": t["period_from"].isoformat() if t["period_from"] else None,
        "period_to": t["period_to"].isoformat() if t["period_to"] else None,
        "severity": t["severity"],
        "public_note": t["note"],
        "decided_by": t["decided_by"],
        "decided_at": t["decided_at"].isoformat().replace("+00:00", "Z"),
    }


async def erase_contact(*, pool: asyncpg.Pool, who: Principal, grievance_id: str) -> schemas.GrievanceOut:
    """Delete the filer's contact (on its request): the contact row goes, `contact_erased_at` says when; the
    grievance, its triages and any flag stay as they are. Erasing twice changes nothing more."""
    _operator(who)
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await repository.get(conn, grievance_id, for_update=True)
            if row is None:
                raise _not_found(grievance_id)
            if await repository.erase_contact(conn, grievance_id, datetime.now(UTC)):
                log.info("grievance %s: contact erased", grievance_id)
        row = await repository.get(conn, grievance_id)
        assert row is not None
        return (await _full(conn, [row]))[0]
