"""Every query of the grievance endpoints, as SQL on an asyncpg connection: grievances, their contacts (apart:
personal data, erasable) and triages, and the triage events into the outbox (`audit.decisions`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from shared.events import CloudEvent
from shared.outbox import enqueue_raw
from shared.topics import AUDIT_DECISIONS

Conn: TypeAlias = asyncpg.Connection

GRIEVANCE_COLUMNS = (
    "id, seq, status, participant_id, site_name, country, region, what, place, occurred_from, occurred_to, "
    "anonymous, filed_at, updated_at, public_note, contact_erased_at"
)


async def insert_grievance(conn: Conn, g: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO grievances (id, receipt_hash, status, participant_id, site_name, country, region, what, place, "
        "occurred_from, occurred_to, anonymous, filed_at, updated_at) "
        "VALUES ($1, $2, 'received', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        g["id"],
        g["receipt_hash"],
        g["participant_id"],
        g["site_name"],
        g["country"],
        g["region"],
        g["what"],
        g["place"],
        g["occurred_from"],
        g["occurred_to"],
        g["anonymous"],
        g["filed_at"],
    )


async def insert_contact(conn: Conn, grievance_id: str, name: str | None, email: str | None, phone: str | None) -> None:
    await conn.execute(
        "INSERT INTO grievance_contacts (grievance_id, name, email, phone) VALUES ($1, $2, $3, $4)",
        grievance_id,
        name,
        email,
        phone,
    )


async def by_receipt(conn: Conn, receipt_hash: str) -> asyncpg.Record | None:
    """The public part of the grievance whose receipt code has this hash (and the hash, compared again)."""
    return await conn.fetchrow(
        "SELECT receipt_hash, status, filed_at, updated_at, public_note FROM grievances WHERE receipt_hash = $1",
        receipt_hash,
    )


async def get(conn: Conn, grievance_id: str, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {GRIEVANCE_COLUMNS} FROM grievances WHERE id = $1{' FOR UPDATE' if for_update else ''}",
        grievance_id,
    )


async def page(conn: Conn, *, status: str | None, before_seq: int | None, limit: int) -> list[asyncpg.Record]:
    """Grievances newest first (by `seq`), after the cursor."""
    return list(
        await conn.fetch(
            f"SELECT {GRIEVANCE_COLUMNS} FROM grievances WHERE ($1::text IS NULL OR status = $1) "
            "AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
            status,
            before_seq,
            limit,
        )
    )


async def contacts(conn: Conn, ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT grievance_id, name, email, phone FROM grievance_contacts WHERE grievance_id = ANY($1::text[])",
        list(ids),
    )
    return {r["grievance_id"]: r for r in rows}


TRIAGE_COLUMNS = (
    "id, grievance_id, decision, participant_id, period_from, period_to, severity, note, decided_by, decided_at"
)


async def triages(conn: Conn, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
    rows = await conn.fetch(
        f"SELECT {TRIAGE_COLUMNS} FROM grievance_triages WHERE grievance_id = ANY($1::text[]) ORDER BY seq",
        list(ids),
    )
    out: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        out.setdefault(r["grievance_id"], []).append(r)
    return out


async def insert_triage(conn: Conn, t: dict[str, Any]) -> None:
    await conn.execute(
        f"INSERT INTO grievance_triages ({TRIAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        t["id"],
        t["grievance_id"],
        t["decision"],
        t["participant_id"],
        t["period_from"],
        t["period_to"],
        t["severity"],
        t["note"],
        t["decided_by"],
        t["decided_at"],
    )


async def set_status(conn: Conn, grievance_id: str, status: str, note: str | None, at: datetime) -> None:
    """The grievance's public status and note after a triage (a triage without a note keeps the one before)."""
    await conn.execute(
        "UPDATE grievances SET status = $2, public_note = coalesce($3, public_note), updated_at = $4 WHERE id = $1",
        grievance_id,
        status,
        note,
        at,
    )


async def erase_contact(conn: Conn, grievance_id: str, at: datetime) -> bool:
    """Delete the grievance's contact row and mark when; False when there was none to delete."""
    deleted = await conn.execute("DELETE FROM grievance_contacts WHERE grievance_id = $1", grievance_id)
    if deleted == "DELETE 0":
        return False
    await conn.execute("UPDATE grievances SET contact_erased_at = $2 WHERE id = $1", grievance_id, at)
    return True


async def participant_known(conn: Conn, participant_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM participants WHERE id = $1", participant_id))


async def publish_triage(conn: Conn, events: Sequence[CloudEvent]) -> None:
    """Triage events into the outbox (`audit.decisions`), in the transaction that records the triage."""
    await enqueue_raw(conn, AUDIT_DECISIONS, events)
