"""The SQL of EPCIS capture: capture jobs, what a document names (lots by EPC class, participants by party URI, the
eventIDs captured before: one statement each), and the captured events and lots' EPC classes written set-based."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from custody.repository import Conn, lot_named


def _visible(caller: str) -> str:
    """SQL, on a lot `l`: the caller holds or held it, or a shipment of it is addressed to the caller (it receives
    lots it never held). Any other lot is answered as one that does not exist."""
    return (
        f"(l.custodian = {caller} OR EXISTS (SELECT 1 FROM lot_holders h WHERE h.lot_id = l.lot_id "
        f"AND h.participant_id = {caller}) OR EXISTS (SELECT 1 FROM shipments s WHERE s.lot_id = l.lot_id "
        f"AND s.to_participant = {caller}))"
    )


LOTS_NAMED = f"""
SELECT 'lgtin:' || e.epc AS key, e.lot_id FROM lot_epcs e JOIN lots l ON l.lot_id = e.lot_id
WHERE e.epc = ANY($1::text[]) AND {_visible("$3::text")}
UNION ALL
SELECT DISTINCT ON (x.sent) 'lot:' || x.sent, l.lot_id FROM unnest($2::text[]) AS x(sent)
JOIN lots l ON l.lot_id = ANY({lot_named("x.sent", "$3::text")})
WHERE {_visible("$3::text")}
"""


async def lots_named(conn: Conn, lgtins: list[str], lot_ids: list[str], caller: str) -> dict[str, str]:
    """The caller's lots a document names: `lgtin:<key>` and `lot:<id>` (`capture_mapping.lot_key`) -> lot id."""
    if not lgtins and not lot_ids:
        return {}
    return {r["key"]: r["lot_id"] for r in await conn.fetch(LOTS_NAMED, lgtins, lot_ids, caller)}


PARTIES_NAMED = """
SELECT 'gln:' || gln AS key, id FROM participants WHERE gln = ANY($1::text[])
UNION ALL
SELECT 'party:' || id, id FROM participants WHERE id = ANY($2::text[])
"""


async def parties_named(conn: Conn, glns: list[str], ids: list[str]) -> dict[str, str]:
    """Registered participants a document names: `gln:<GLN>` and `party:<id>` -> participant id."""
    if not glns and not ids:
        return {}
    return {r["key"]: r["id"] for r in await conn.fetch(PARTIES_NAMED, glns, ids)}


async def captured(conn: Conn, actor: str, event_ids: list[str]) -> dict[str, asyncpg.Record]:
    """The events among `event_ids` the actor captured before, with what they became."""
    rows = await conn.fetch(
        "SELECT event_id, lot_ids, custody_event_ids FROM epcis_events WHERE actor = $1 AND event_id = ANY($2::text[])",
        actor,
        event_ids,
    )
    return {r["event_id"]: r for r in rows}


IN_TRANSIT_TO = """
SELECT shipment_id FROM shipments
WHERE lot_id = $1 AND to_participant = $2 AND status = 'in_transit' AND ($3::text IS NULL OR from_participant = $3)
ORDER BY shipped_at, shipment_id LIMIT 1
"""


async def in_transit_to(conn: Conn, lot_id: str, caller: str, source: str | None) -> str | None:
    """The in-transit shipment of `lot_id` addressed to `caller` (from `source`, when named), oldest first."""
    found: str | None = await conn.fetchval(IN_TRANSIT_TO, lot_id, caller, source)
    return found


INSERT_EPCIS_EVENTS = """
INSERT INTO epcis_events (actor, event_id, job_id, type, event_time, biz_step, biz_location, epcs, lot_ids,
                          custody_event_ids, outcome, note, body)
SELECT $1, e.event_id, $2, e.type, e.event_time, e.biz_step, e.biz_location,
       ARRAY(SELECT jsonb_array_elements_text(e.epcs)), ARRAY(SELECT jsonb_array_elements_text(e.lot_ids)),
       ARRAY(SELECT jsonb_array_elements_text(e.custody_event_ids)), e.outcome, e.note, e.body
FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], $10::jsonb[],
            $11::text[], $12::text[], $13::jsonb[])
  AS e(event_id, type, event_time, biz_step, biz_location, epcs, lot_ids, custody_event_ids, outcome, note, body)
ON CONFLICT (actor, event_id) DO NOTHING
"""
ROW_FIELDS = (
    "event_id",
    "type",
    "event_time",
    "biz_step",
    "biz_location",
    "epcs",
    "lot_ids",
    "custody_event_ids",
    "outcome",
    "note",
    "body",
)
_JSON_FIELDS = frozenset({"epcs", "lot_ids", "custody_event_ids", "body"})


async def insert_events(conn: Conn, actor: str, job_id: str, rows: list[dict[str, Any]]) -> None:
    """The document's captured events, one statement (lists travel as JSON arrays: unnest cannot take arrays of
    arrays of different lengths)."""
    if not rows:
        return
    cols = [[orjson.dumps(r[f]).decode() if f in _JSON_FIELDS else r[f] for r in rows] for f in ROW_FIELDS]
    await conn.execute(INSERT_EPCIS_EVENTS, actor, job_id, *cols)


INSERT_LOT_EPCS = """
INSERT INTO lot_epcs (lot_id, epc, registrant) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
"""


async def insert_lot_epcs(conn: Conn, rows: list[tuple[str, str, str]]) -> None:
    """(lot, lgtin key, registrant) of the lots the document registered with an LGTIN."""
    if rows:
        await conn.execute(INSERT_LOT_EPCS, *(list(c) for c in zip(*rows, strict=True)))


# --- jobs ---------------------------------------------------------------------------------------------------------

JOB_COLUMNS = "job_id, actor, status, error_behaviour, event_count, applied, stored, errors, created_at, finished_at"

INSERT_JOB = f"""
INSERT INTO capture_jobs (job_id, actor, status, error_behaviour, event_count, key, request_hash)
VALUES ($1, $2, 'running', $3, $4, $5, $6)
ON CONFLICT (actor, key) DO NOTHING
RETURNING {JOB_COLUMNS}
"""


async def insert_job(
    conn: Conn, job_id: str, actor: str, behaviour: str, count: int, key: str | None, request_hash: bytes | None
) -> asyncpg.Record | None:
    """A new running job; None when the actor's key is taken already (`job_by_key`)."""
    row: asyncpg.Record | None = await conn.fetchrow(INSERT_JOB, job_id, actor, behaviour, count, key, request_hash)
    return row


async def job_by_key(conn: Conn, actor: str, key: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS}, request_hash FROM capture_jobs WHERE actor = $1 AND key = $2", actor, key
    )
    return row


async def running_job(conn: Conn, actor: str) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT job_id FROM capture_jobs WHERE actor = $1 AND status = 'running' LIMIT 1", actor
    )
    return found


FINISH_JOB = """
UPDATE capture_jobs SET status = $2, applied = $3, stored = $4, errors = $5::jsonb, finished_at = now()
WHERE job_id = $1
"""


async def finish_job(
    conn: Conn, job_id: str, *, failed: bool, applied: int, stored: int, errors: list[dict[str, Any]]
) -> None:
    await conn.execute(
        FINISH_JOB, job_id, "failed" if failed else "succeeded", applied, stored, orjson.dumps(errors).decode()
    )


async def job(conn: Conn, job_id: str, actor: str) -> asyncpg.Record | None:
    """The actor's job; None for none and for another's (the same answer)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM capture_jobs WHERE job_id = $1 AND actor = $2", job_id, actor
    )
    return row


LIST_JOBS = f"""
SELECT {JOB_COLUMNS} FROM capture_jobs
WHERE actor = $1 AND ($2::text IS NULL OR (created_at, job_id) <
      (SELECT c.created_at, c.job_id FROM capture_jobs c WHERE c.job_id = $2 AND c.actor = $1))
ORDER BY created_at DESC, job_id DESC LIMIT $3
"""


async def list_jobs(conn: Conn, actor: str, after: str | None, limit: int) -> list[asyncpg.Record]:
    """The actor's jobs, newest first, after the job `after` (the previous page's last)."""
    return list(await conn.fetch(LIST_JOBS, actor, after, limit))


INTERRUPTED = "interrupted; capture again: events already captured are recognised by their eventID"


async def fail_interrupted(conn: Conn, when: datetime) -> int:
    """Jobs left running by a process that stopped (created before `when`, this process's start): failed."""
    errors = orjson.dumps([{"exception": "epcisException:ImplementationException", "detail": INTERRUPTED}]).decode()
    result: str = await conn.execute(
        "UPDATE capture_jobs SET status = 'failed', finished_at = now(), errors = $2::jsonb "
        "WHERE status = 'running' AND created_at < $1",
        when,
        errors,
    )
    return int(result.split()[-1])


async def lots_of_events(conn: Conn, event_ids: list[str]) -> dict[str, str]:
    """The lot of each of these custody events (`lot_events.event_id` -> lot id)."""
    rows = await conn.fetch("SELECT event_id, lot_id FROM lot_events WHERE event_id = ANY($1::text[])", event_ids)
    return {r["event_id"]: r["lot_id"] for r in rows}
