"""Every query of the audit API, as SQL on an asyncpg connection: flags (read, filtered, decided, their events into
the outbox), the decisions on them (`flag_decisions`, re-applied by a replay), and what a lot's risk summary reads
(its upstream walk, origins, smelters). The projection's own statements are `audit/projection/statements.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from audit import rules
from shared.events import CloudEvent
from shared.genealogy import goes_on_sql, walk_sql
from shared.outbox import enqueue_raw
from shared.topics import AUDIT_DECISIONS, AUDIT_FLAGS
from shared.visibility import (
    Party,
    affected_lots_sql,
    flag_reach_cte,
    flag_visible_sql,
    grant_lots_sql,
    grant_opens_lot_sql,
    lot_visible_sql,
    lots_affecting_sql,
    officer_flag_sql,
)

Conn: TypeAlias = asyncpg.Connection

FLAG_COLUMNS = (
    "id, seq, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence::text AS evidence, "
    "status, raised_at, resolved_by, resolved_at, note, "
    + """
    (SELECT coalesce(jsonb_agg(jsonb_build_object('summary', h.summary, 'evidence', h.evidence,
                                                  'replaced_at', h.replaced_at) ORDER BY h.seq), '[]')
     FROM flag_evidence_history h WHERE h.flag_id = flags.id)::text AS evidence_history,
    coalesce((SELECT max(h.replaced_at) FROM flag_evidence_history h WHERE h.flag_id = flags.id)
             > (SELECT max(d.decided_at) FROM flag_decisions d
                WHERE d.flag_id = flags.id AND d.kind IN ('acknowledge', 'resolve', 'reopen')), false)
        AS evidence_changed_since_decision"""
)
"""A flag as the API shows it. Its evidence history (what a re-judgement replaced, oldest first) and whether the
evidence changed after the latest decision on it (an acknowledgement, a resolution, a re-opening) come from
`flag_evidence_history`, which a replay keeps, and `flag_decisions`."""


# When the event a flag is about was recorded (its time in the stream, as custody wrote it): the custody event its
# evidence names, else the transformation or shipment it names, else its lot's registration. Compared with a former
# holder's hand-off (`lot_holders.until`, its buyer's receipt, on the same clock): the same answer live and after a
# replay, whatever order the topics interleaved in and whenever reference data re-judged the flag.
FLAG_EVENT_AT = """coalesce(
  (SELECT e.time FROM received_events e
   WHERE e.source = '/custody' AND e.event_id = flags.evidence->>'event_id' ORDER BY e.seq LIMIT 1),
  (SELECT t.recorded_at FROM transformations t WHERE t.transformation_id = flags.evidence->>'transformation_id'),
  (SELECT s.recorded_at FROM shipments s WHERE s.shipment_id = flags.evidence->>'shipment_id'),
  (SELECT l.recorded_at FROM lots l WHERE l.lot_id = flags.lot_id))"""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose flags a query returns: a participant's (`participant`), an officer's scope (`scope`), a regulator's
    grant (`grant`: its lots and its participants), or everyone's (none: the operator, an officer scoped to all)."""

    participant: str | None = None
    scope: Sequence[str] | None = None
    max_depth: int = 100
    grant: tuple[Sequence[str], Sequence[str]] | None = None


EVERYONE = Viewer()


def _visible(w: Where, viewer: Viewer) -> None:
    if viewer.participant is not None:
        who = w.arg(viewer.participant)
        w.ctes.append(flag_reach_cte(who, w.arg(viewer.max_depth)))
        w.add(flag_visible_sql(who, event_at=FLAG_EVENT_AT, reach="flag_reach"))
    elif viewer.grant is not None:
        lots, participants = viewer.grant
        opened = grant_lots_sql(w.arg(list(lots)), w.arg(list(participants)), w.arg(viewer.max_depth))
        w.add(f"lot_ids && ARRAY({opened})")
    elif viewer.scope is not None:
        w.add(officer_flag_sql(w.arg(list(viewer.scope))))


def flag_row(r: asyncpg.Record) -> dict[str, Any]:
    """A flags row as the API shows it (`schemas.Flag`): the evidence decoded, the paging key left out."""
    d = dict(r)
    d.pop("seq", None)
    d["evidence"] = orjson.loads(d["evidence"])
    if "evidence_history" in d:
        d["evidence_history"] = orjson.loads(d["evidence_history"])
    return d


class Where:
    """The conditions and arguments of one query, numbered as they are added."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []
        self.ctes: list[str] = []  # common table expressions the conditions read (`flag_reach_cte`)

    def arg(self, v: Any) -> str:
        self.args.append(v)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.conditions.append(condition)

    @property
    def sql(self) -> str:
        return f"WHERE {' AND '.join(self.conditions)}" if self.conditions else ""

    @property
    def with_(self) -> str:
        """What the query starts with: its common table expressions, if any."""
        return f"WITH {', '.join(self.ctes)} " if self.ctes else ""


@dataclass(frozen=True, slots=True)
class FlagFilter:
    status: str | None = None  # None: every status but `withdrawn` (asked for by name only)
    severity: str | None = None
    rule: str | None = None
    lot_id: str | None = None
    participant: str | None = None


async def list_flags(
    conn: Conn, f: FlagFilter, *, viewer: Viewer, before_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """Flags newest first (by `seq`), after the cursor, that `viewer` may see."""
    w = Where()
    if before_seq is not None:
        w.add(f"seq < {w.arg(before_seq)}")
    _filtered(w, f, viewer)
    sql = f"{w.with_}SELECT {FLAG_COLUMNS} FROM flags {w.sql} ORDER BY seq DESC LIMIT {w.arg(limit)}"
    return list(await conn.fetch(sql, *w.args))


def _filtered(w: Where, f: FlagFilter, viewer: Viewer) -> None:
    """The flags `f` asks for (without a status: every one but the withdrawn) among those `viewer` may see."""
    for col, val in (("status", f.status), ("severity", f.severity), ("rule", f.rule)):
        if val is not None:
            w.add(f"{col} = {w.arg(val)}")
    if f.status is None:
        w.add("status <> 'withdrawn'")
    if f.lot_id is not None:
        w.add(f"{w.arg(f.lot_id)} = ANY(lot_ids)")
    if f.participant is not None:
        w.add(f"{w.arg(f.participant)} = ANY(participants)")
    _visible(w, viewer)


async def count_flags(conn: Conn, f: FlagFilter, *, viewer: Viewer) -> list[asyncpg.Record]:
    """How many flags `list_flags` would page through (the same filter, the same visibility), in one statement:
    a row (status, severity, rule, n) for each combination there is."""
    w = Where()
    _filtered(w, f, viewer)
    sql = (
        f"{w.with_}SELECT status, severity, rule, count(*) AS n FROM flags {w.sql} "
        "GROUP BY status, severity, rule ORDER BY status, severity, rule"
    )
    return list(await conn.fetch(sql, *w.args))


async def get_flag(conn: Conn, flag_id: str, *, viewer: Viewer, for_update: bool = False) -> asyncpg.Record | None:
    w = Where()
    w.add(f"id = {w.arg(flag_id)}")
    _visible(w, viewer)
    return await conn.fetchrow(
        f"{w.with_}SELECT {FLAG_COLUMNS} FROM flags {w.sql}{' FOR UPDATE OF flags' if for_update else ''}", *w.args
    )


# --- decisions ----------------------------------------------------------------------------------------------------

DECISION_COLUMNS = (
    "id, flag_id, rule, cause, kind, decided_by, decided_by_kind, authority::text AS authority, decided_at, note, "
    "evidence::text AS evidence"
)


def decision_row(r: asyncpg.Record) -> dict[str, Any]:
    """A flag_decisions row as the API and the decision event show it (JSON columns decoded)."""
    d = dict(r)
    d["authority"] = orjson.loads(d["authority"])
    d["evidence"] = orjson.loads(d["evidence"])
    return d


AFFECTED_HELD_BY = (
    "SELECT l.lot_id FROM lots l WHERE l.custodian = $3 AND l.lot_id IN (SELECT lot_id FROM ("
    + affected_lots_sql("$1", "$2")
    + ") affected) ORDER BY l.lot_id"
)


async def holding(conn: Conn, lot_ids: Sequence[str], participant: str, max_depth: int) -> list[str]:
    """The lots a flag on `lot_ids` affects (those lots and every lot made from them) that `participant` holds now."""
    return [r["lot_id"] for r in await conn.fetch(AFFECTED_HELD_BY, list(lot_ids), max_depth, participant)]


async def held_by(conn: Conn, lot_ids: Sequence[str]) -> frozenset[str]:
    """Everyone who holds or held one of these lots."""
    rows = await conn.fetch("SELECT DISTINCT participant_id FROM lot_holders WHERE lot_id = ANY($1::text[])", lot_ids)
    return frozenset(r["participant_id"] for r in rows)


async def acknowledged(conn: Conn, flag_id: str, participant: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM flag_decisions WHERE flag_id = $1 AND kind = 'acknowledge' AND decided_by = $2",
            flag_id,
            participant,
        )
    )


async def decisions_of(conn: Conn, flag_id: str) -> list[dict[str, Any]]:
    """A flag's decisions, oldest first."""
    rows = await conn.fetch(f"SELECT {DECISION_COLUMNS} FROM flag_decisions WHERE flag_id = $1 ORDER BY seq", flag_id)
    return [decision_row(r) for r in rows]


INSERT_DECISIONS = """
INSERT INTO flag_decisions (id, flag_id, rule, cause, kind, decided_by, decided_by_kind, authority, decided_at, note,
                            evidence)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::jsonb[], $9::timestamptz[], $10::text[], $11::jsonb[])
ON CONFLICT DO NOTHING
"""


async def insert_decisions(conn: Conn, decisions: Sequence[dict[str, Any]]) -> int:
    """Record decisions (dicts with the columns of `flag_decisions`); one already there (same id, or a second
    acknowledgement by the same participant) is left as it is. Returns how many were new."""
    if not decisions:
        return 0
    cols = ("id", "flag_id", "rule", "cause", "kind", "decided_by", "decided_by_kind")
    args: list[list[Any]] = [[d[c] for d in decisions] for c in cols]
    args.append([orjson.dumps(d["authority"]).decode() for d in decisions])
    args.append([d["decided_at"] for d in decisions])
    args.append([d["note"] for d in decisions])
    args.append([orjson.dumps(d["evidence"]).decode() for d in decisions])
    status = await conn.execute(INSERT_DECISIONS, *args)
    return int(status.rsplit(" ", 1)[-1])


SET_STATUS = f"""
UPDATE flags SET status = $2, resolved_by = $3, resolved_at = $4, note = $5 WHERE id = $1 RETURNING {FLAG_COLUMNS}
"""


async def set_status(
    conn: Conn, flag_id: str, *, status: str, by: str | None, at: datetime | None, note: str | None
) -> asyncpg.Record:
    """A resolution (status `resolved`, by, at, note) or a re-opening (`open`, no resolution) on a locked flag."""
    row = await conn.fetchrow(SET_STATUS, flag_id, status, by, at, note)
    assert row is not None, "the flag is locked: it exists"
    return row


# The statuses the decisions say: each flag's latest resolution or re-opening, matched by (rule, cause). Run by a
# replay once the flags are raised again; flags no one decided stay as raised (open).
RESTORE_STATUSES = """
UPDATE flags f
SET status = CASE WHEN d.kind = 'resolve' THEN 'resolved' ELSE 'open' END,
    resolved_by = CASE WHEN d.kind = 'resolve' THEN d.decided_by END,
    resolved_at = CASE WHEN d.kind = 'resolve' THEN d.decided_at END,
    note = CASE WHEN d.kind = 'resolve' THEN d.note END
FROM (
  SELECT DISTINCT ON (rule, cause) rule, cause, kind, decided_by, decided_at, note
  FROM flag_decisions WHERE kind IN ('resolve', 'reopen') ORDER BY rule, cause, seq DESC
) d
WHERE f.rule = d.rule AND f.cause = d.cause
"""


async def restore_statuses(conn: Conn) -> int:
    """Give every flag the status its decisions say; returns how many flags that touched."""
    return int((await conn.execute(RESTORE_STATUSES)).rsplit(" ", 1)[-1])


async def publish_decision(conn: Conn, events: Sequence[CloudEvent]) -> None:
    """Decision events into the outbox (`audit.decisions`), in the transaction that records the decision."""
    await enqueue_raw(conn, AUDIT_DECISIONS, events)


async def publish(conn: Conn, events: Sequence[CloudEvent]) -> None:
    """Flag events into the outbox, in the transaction of the change they tell of."""
    await enqueue_raw(conn, AUDIT_FLAGS, events)


async def lot_exists(conn: Conn, lot_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM lots WHERE lot_id = $1", lot_id))


MAY_SEE_LOT = lot_visible_sql("$3")
GRANT_OPENS_LOT = grant_opens_lot_sql("$1", "$2", "$3", "$4")


async def may_see_lot(conn: Conn, lot_id: str, participant: str, max_depth: int) -> bool:
    return bool(await conn.fetchval(MAY_SEE_LOT, lot_id, participant, max_depth))


async def grant_opens_lot(
    conn: Conn, lot_id: str, lots: Sequence[str], participants: Sequence[str], max_depth: int
) -> bool:
    """Whether a regulator's grant (its lots, its participants) opens `lot_id`."""
    return bool(await conn.fetchval(GRANT_OPENS_LOT, lot_id, list(lots), list(participants), max_depth))


UPSTREAM = (
    walk_sql(upstream=True, depth_limit="$2", max_lots="$3")
    + "SELECT lot_id, depth, CASE WHEN depth = (SELECT depth FROM walk_end) THEN "
    + goes_on_sql(upstream=True, lot="reached.lot_id")
    + " ELSE false END AS cut, (SELECT CASE WHEN lots_cut THEN depth END FROM walk_end) AS lots_cut_at "
    + "FROM reached ORDER BY depth, lot_id"
)


async def upstream(
    conn: Conn, lot_id: str, max_depth: int, max_lots: int
) -> tuple[dict[str, int], list[str], int | None]:
    """Every lot upstream of `lot_id` (itself at depth 0) with its depth, the lots where the walk was cut (at the
    depth it stopped at, made from lots it did not follow: `shared.genealogy`), and that depth when `max_lots`
    stopped it (None: it went to `max_depth` or to the end). At most `max_lots` lots."""
    rows = await conn.fetch(UPSTREAM, lot_id, max_depth, max_lots)
    return (
        {r["lot_id"]: r["depth"] for r in rows},
        [r["lot_id"] for r in rows if r["cut"]],
        rows[0]["lots_cut_at"] if rows else None,
    )


async def flags_on(conn: Conn, lot_ids: Sequence[str], viewer: Viewer = EVERYONE) -> list[asyncpg.Record]:
    """The flags on these lots that a risk summary lists, of those `viewer` may see: withdrawn ones are not (the
    rule does not hold for them: a replay has none of them either)."""
    w = Where()
    w.add(f"lot_ids && {w.arg(list(lot_ids))}::text[]")
    w.add("status <> 'withdrawn'")
    _visible(w, viewer)
    return list(await conn.fetch(f"{w.with_}SELECT {FLAG_COLUMNS} FROM flags {w.sql} ORDER BY seq", *w.args))


# What deciding on the identities `viewer` ($1) reads needs to know of each participant among $2: its kind and
# policy (unknown to audit: null, the default), whether they traded directly (a shipment between them, either way),
# and whether the viewer holds or held material from its lots: it holds or held, or is the origin or the ASM producer
# of, a lot the viewer's lots were made from (`lots_affecting_sql`'s walk, $3 steps), or it let go of one of the
# viewer's own lots before the viewer did (a later holder of the viewer's lot is downstream of it, not upstream).
PARTIES = (
    "WITH up AS MATERIALIZED ("
    + lots_affecting_sql("$1", "$3")
    + """), own AS MATERIALIZED (SELECT lot_id, until FROM lot_holders WHERE participant_id = $1),
counterparties AS MATERIALIZED (
  SELECT receiver AS id FROM shipments WHERE sender = $1 AND receiver = ANY($2::text[])
  UNION SELECT sender FROM shipments WHERE receiver = $1 AND sender = ANY($2::text[])
), upstream AS MATERIALIZED (
  SELECT h.participant_id AS id FROM up JOIN lot_holders h USING (lot_id)
  WHERE h.participant_id = ANY($2::text[]) AND up.lot_id NOT IN (SELECT lot_id FROM own)
  UNION SELECT h.participant_id FROM own o JOIN lot_holders h USING (lot_id)
  WHERE h.participant_id = ANY($2::text[]) AND h.until IS NOT NULL AND (o.until IS NULL OR h.until <= o.until)
  UNION SELECT l.origin_participant FROM up JOIN lots l USING (lot_id) WHERE l.origin_participant = ANY($2::text[])
  UNION SELECT l.produced_by FROM up JOIN lots l USING (lot_id) WHERE l.produced_by = ANY($2::text[])
)
SELECT x.id, p.kind, p.disclosure, x.id IN (SELECT id FROM counterparties) AS counterparty,
       x.id IN (SELECT id FROM upstream) AS downstream
FROM unnest($2::text[]) AS x(id) LEFT JOIN participants p ON p.id = x.id
"""
)


async def parties(conn: Conn, viewer: str, ids: Sequence[str], max_depth: int) -> dict[str, Party]:
    """What `shared.visibility.identity_disclosed` needs of each of these ids as `viewer` reads them (kind None: not
    a participant audit knows: an evidence's words, or a party the registry never told of)."""
    if not ids:
        return {}
    rows = await conn.fetch(PARTIES, viewer, sorted(set(ids)), max_depth)
    return {r["id"]: Party(r["kind"], r["disclosure"], r["counterparty"], r["downstream"]) for r in rows}


# The certifications of the origin's participant in force on its production day (UTC), the latest recorded per
# scheme, as the rules read them (`rules.held`): its IRMA level, and its ASM certifications ("scheme:value") from
# which `rules.asm_certification` picks the one that counts.
ORIGINS = """
SELECT l.lot_id, l.origin_kind, l.origin_participant, l.origin_country, l.origin_region, l.origin_mining_type,
  (SELECT c.value FROM certifications c WHERE c.participant_id = l.origin_participant AND c.scheme = 'irma'
     AND c.valid_from <= (l.origin_at AT TIME ZONE 'UTC')::date
     AND (c.valid_until IS NULL OR (l.origin_at AT TIME ZONE 'UTC')::date <= c.valid_until)
   ORDER BY c.known_at DESC, c.id DESC LIMIT 1) AS irma,
  ARRAY(SELECT DISTINCT ON (c.scheme) c.scheme || ':' || c.value FROM certifications c
        WHERE c.participant_id = l.origin_participant AND c.scheme = ANY($2::text[])
          AND c.valid_from <= (l.origin_at AT TIME ZONE 'UTC')::date
          AND (c.valid_until IS NULL OR (l.origin_at AT TIME ZONE 'UTC')::date <= c.valid_until)
        ORDER BY c.scheme, c.known_at DESC, c.id DESC) AS asm
FROM lots l WHERE l.lot_id = ANY($1::text[]) AND l.origin_kind IN ('mine', 'external') ORDER BY l.lot_id
"""


async def origins(conn: Conn, lot_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The origin lots among these, with their participant's IRMA level and ASM certifications on the production
    day."""
    return list(await conn.fetch(ORIGINS, list(lot_ids), list(rules.ASM_SCHEMES)))


# Whoever smelted or refined (`rules.smelting_basis`: a smelter or refiner, a transformation recorded as smelting or
# refining, or ore or concentrate into metal by anyone), with its RMAP status on the day.
SMELTERS = """
SELECT DISTINCT t.transformation_id, t.actor, t.actor_kind, t.occurred_at,
  (SELECT p.rmi_smelter_id FROM participants p WHERE p.id = t.actor) AS rmi_smelter_id,
  (SELECT value FROM certifications c WHERE c.participant_id = t.actor AND c.scheme = 'rmap'
     AND c.valid_from <= t.occurred_at::date AND (c.valid_until IS NULL OR t.occurred_at::date <= c.valid_until)
   ORDER BY c.known_at DESC LIMIT 1) AS rmap
FROM transformation_outputs o JOIN transformations t USING (transformation_id)
WHERE o.lot_id = ANY($1::text[])
  AND (t.actor_kind = ANY($2::text[]) OR t.kind = ANY($3::text[])
       OR (EXISTS (SELECT 1 FROM transformation_inputs i JOIN lots li ON li.lot_id = i.lot_id
                   WHERE i.transformation_id = t.transformation_id AND li.form = ANY($4::text[]))
           AND EXISTS (SELECT 1 FROM transformation_outputs x JOIN lots lo ON lo.lot_id = x.lot_id
                       WHERE x.transformation_id = t.transformation_id AND lo.form = 'metal')))
ORDER BY t.occurred_at
"""


async def smelters(conn: Conn, lot_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Whoever smelted or refined any of these lots (a trader turning ore into metal too), with its RMAP status on
    the day."""
    return list(
        await conn.fetch(
            SMELTERS,
            list(lot_ids),
            sorted(rules.SMELTER_KINDS),
            sorted(rules.SMELTING_KINDS),
            sorted(rules.RAW_FORMS),
        )
    )
