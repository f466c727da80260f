"""Every query of the audit API, as SQL on an asyncpg connection: flags (read, filtered, decided, their events into
the outbox), and what a lot's risk summary reads (its upstream walk, origins, smelters). The projection's own
statements are `audit/projection/statements.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from shared.events import CloudEvent
from shared.genealogy import goes_on_sql, walk_sql
from shared.outbox import enqueue_raw
from shared.topics import AUDIT_FLAGS
from shared.visibility import flag_visible_sql, lot_visible_sql

Conn: TypeAlias = asyncpg.Connection

FLAG_COLUMNS = (
    "id, seq, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence::text AS evidence, "
    "status, raised_at, acknowledged_by, acknowledged_at, resolved_by, resolved_at, note"
)


def flag_row(r: asyncpg.Record) -> dict[str, Any]:
    """A flags row as the API shows it (`schemas.Flag`): the evidence decoded, the paging key left out."""
    d = dict(r)
    d.pop("seq", None)
    d["evidence"] = orjson.loads(d["evidence"])
    return d


class Where:
    """The conditions and arguments of one query, numbered as they are added."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def arg(self, v: Any) -> str:
        self.args.append(v)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.conditions.append(condition)

    @property
    def sql(self) -> str:
        return f"WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


@dataclass(frozen=True, slots=True)
class FlagFilter:
    status: str | None = None
    severity: str | None = None
    rule: str | None = None
    lot_id: str | None = None
    participant: str | None = None


async def list_flags(
    conn: Conn, f: FlagFilter, *, viewer: str | None, before_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """Flags newest first (by `seq`), after the cursor; `viewer` None: the operator (all of them)."""
    w = Where()
    if before_seq is not None:
        w.add(f"seq < {w.arg(before_seq)}")
    for col, val in (("status", f.status), ("severity", f.severity), ("rule", f.rule)):
        if val is not None:
            w.add(f"{col} = {w.arg(val)}")
    if f.lot_id is not None:
        w.add(f"{w.arg(f.lot_id)} = ANY(lot_ids)")
    if f.participant is not None:
        w.add(f"{w.arg(f.participant)} = ANY(participants)")
    if viewer is not None:
        w.add(flag_visible_sql(w.arg(viewer)))
    sql = f"SELECT {FLAG_COLUMNS} FROM flags {w.sql} ORDER BY seq DESC LIMIT {w.arg(limit)}"
    return list(await conn.fetch(sql, *w.args))


async def get_flag(conn: Conn, flag_id: str, *, viewer: str | None, for_update: bool = False) -> asyncpg.Record | None:
    w = Where()
    w.add(f"id = {w.arg(flag_id)}")
    if viewer is not None:
        w.add(flag_visible_sql(w.arg(viewer)))
    return await conn.fetchrow(
        f"SELECT {FLAG_COLUMNS} FROM flags {w.sql}{' FOR UPDATE' if for_update else ''}", *w.args
    )


ACKNOWLEDGE = f"""
UPDATE flags SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = $3, note = coalesce($4, note)
WHERE id = $1 RETURNING {FLAG_COLUMNS}
"""
RESOLVE = f"""
UPDATE flags SET status = 'resolved', resolved_by = $2, resolved_at = $3, note = $4
WHERE id = $1 RETURNING {FLAG_COLUMNS}
"""


async def decide_flag(conn: Conn, flag_id: str, *, to: str, by: str, at: datetime, note: str | None) -> asyncpg.Record:
    """Record a decision on a flag (locked by `get_flag(..., for_update=True)` in the same transaction)."""
    row = await conn.fetchrow(ACKNOWLEDGE if to == "acknowledged" else RESOLVE, flag_id, by, at, note)
    assert row is not None, "the flag is locked: it exists"
    return row


async def publish(conn: Conn, events: Sequence[CloudEvent]) -> None:
    """Flag events into the outbox, in the transaction of the change they tell of."""
    await enqueue_raw(conn, AUDIT_FLAGS, events)


async def lot_exists(conn: Conn, lot_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM lots WHERE lot_id = $1", lot_id))


MAY_SEE_LOT = lot_visible_sql("$3")


async def may_see_lot(conn: Conn, lot_id: str, participant: str, max_depth: int) -> bool:
    return bool(await conn.fetchval(MAY_SEE_LOT, lot_id, participant, max_depth))


UPSTREAM = (
    walk_sql(upstream=True, depth_limit="$2")
    + "SELECT lot_id, depth, CASE WHEN depth = $2 THEN "
    + goes_on_sql(upstream=True, lot="reached.lot_id")
    + " ELSE false END AS cut FROM reached ORDER BY depth, lot_id"
)


async def upstream(conn: Conn, lot_id: str, max_depth: int) -> tuple[dict[str, int], list[str]]:
    """Every lot upstream of `lot_id` (itself at depth 0) with its depth, and the lots where the walk was cut (at
    `max_depth`, made from lots it did not follow: `shared.genealogy`)."""
    rows = await conn.fetch(UPSTREAM, lot_id, max_depth)
    return {r["lot_id"]: r["depth"] for r in rows}, [r["lot_id"] for r in rows if r["cut"]]


async def flags_on(conn: Conn, lot_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(f"SELECT {FLAG_COLUMNS} FROM flags WHERE lot_ids && $1::text[] ORDER BY seq", list(lot_ids))
    )


async def origins(conn: Conn, lot_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT lot_id, origin_kind, origin_participant, origin_country, origin_region, origin_mining_type "
            "FROM lots WHERE lot_id = ANY($1::text[]) AND origin_kind IN ('mine', 'external') ORDER BY lot_id",
            list(lot_ids),
        )
    )


SMELTERS = """
SELECT DISTINCT t.transformation_id, t.actor, t.actor_kind, t.occurred_at,
  (SELECT value FROM certifications c WHERE c.participant_id = t.actor AND c.scheme = 'rmap'
     AND c.valid_from <= t.occurred_at::date AND (c.valid_until IS NULL OR t.occurred_at::date <= c.valid_until)
   ORDER BY c.known_at DESC LIMIT 1) AS rmap
FROM transformation_outputs o JOIN transformations t USING (transformation_id)
WHERE o.lot_id = ANY($1::text[]) AND t.actor_kind IN ('smelter', 'refiner') ORDER BY t.occurred_at
"""


async def smelters(conn: Conn, lot_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The smelters and refiners that made any of these lots, with their RMAP status on the day."""
    return list(await conn.fetch(SMELTERS, list(lot_ids)))


async def holds_any(conn: Conn, participant: str, lot_ids: Sequence[str]) -> list[str]:
    """Which of these lots `participant` holds or held."""
    rows = await conn.fetch(
        "SELECT lot_id FROM lot_holders WHERE participant_id = $1 AND lot_id = ANY($2::text[])", participant, lot_ids
    )
    return [r["lot_id"] for r in rows]
