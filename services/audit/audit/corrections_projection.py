"""`custody.event.corrected` in the audit projection (the rules: `audit.corrections_domain`; docs/corrections.md).

- `decode` and `on_corrected` (the handler, no I/O): the correction among the batch's pending changes
  (`Changes.corrections`), and, for a voided shipment, the state with the correction applied: the shipment is no
  longer open (never overdue) and its transit is no longer re-screened.
- `write` (after the batch's rows and flags, so a flag raised in the same batch is marked too): the `corrections`
  rows, the voided shipments, the flags whose grounds the corrections are marked (`evidence.correction`, the summary;
  their status untouched, their former evidence in `flag_evidence_history`, an `audit.flag.updated` event each, as a
  re-judgement's), and the `record_corrected` findings.

Replay-safe: the rows are written with ON CONFLICT DO NOTHING and the history rows and events have ids derived from
(correction, flag); a replay rebuilds the flags, marks them again from the same events (publishing nothing), and the
people's decisions, never emptied, are applied again from `audit.decisions`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from audit.corrections_domain import EFFECTS, REASONS, SERIOUS, Correction, grounds, record_corrected, summary_note
from audit.projection import statements
from audit.projection.context import Context
from audit.projection.decode import dt, text_or_none, utc
from audit.projection.flags import SOURCE
from audit.projection.state import Bag
from shared.events import CloudEvent, dataschema_for
from shared.sql import Statement
from shared.topics import AUDIT_FLAGS

if TYPE_CHECKING:
    from audit.projection import Projection

CORRECTED = "custody.event.corrected"
MARKS = uuid.UUID("0c3f5e2a-6b1d-4e8f-9a27-5d4c3b2a1f00")
"""The namespace of the ids of a mark's evidence history row and `audit.flag.updated` event: (correction, flag)."""


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise TypeError(f"{what} must be a non-empty string")
    return v


def decode(e: CloudEvent) -> Correction:
    d = e.data
    reason, effect = d["reason"], d["effect"]
    if reason not in REASONS:
        raise ValueError(f"reason {reason!r} is none of {sorted(REASONS)}")
    if effect not in EFFECTS:
        raise ValueError(f"effect {effect!r} is none of {sorted(EFFECTS)}")
    at = dt(d["occurred_at"])
    if at is None:
        raise ValueError("a correction without occurred_at")
    shipment = d.get("shipment_id")
    corrective = d.get("corrective_event_ids") or []
    if not isinstance(corrective, list) or not all(isinstance(i, str) for i in corrective):
        raise TypeError("corrective_event_ids must be event ids")
    bag = d.get("registered_bag")
    if bag is not None and not isinstance(bag, dict):
        raise TypeError("registered_bag must be an object or null")
    return Correction(
        e.id,
        _text(d["lot_id"], "lot_id"),
        _text(d["corrected_event_id"], "corrected_event_id"),
        _text(d["corrected_type"], "corrected_type"),
        reason,
        _text(d["note"], "note"),
        _text(d["actor"], "actor"),
        utc(at),
        effect,
        None if shipment is None else _text(shipment, "shipment_id"),
        tuple(corrective),
        None if bag is None else (text_or_none(bag.get("tag"), "tag"), text_or_none(bag.get("seal"), "seal")),
    )


def on_corrected(ctx: Context, c: Correction) -> None:
    """The correction, to be written with the batch; a voided shipment no longer counts from here on."""
    j, s = ctx.journal, ctx.state
    j.set(ctx.changes.corrections, c.correction_id, c)
    j.set(s.corrected, c.event_id, c)  # findings grounded on it from here on are raised showing it
    if c.shipment_id is not None and c.shipment_id not in s.corrected_shipments:
        j.set(s.corrected_shipments, c.shipment_id, c)
    sid = c.voids
    if sid is not None:
        j.discard(s.open_shipments, sid)
        if sid in s.transits:
            j.pop(s.transits, sid)  # `screening.transit` finds none: a CAHRA listed later re-screens nothing
        if c.registered_bag is not None:  # it was the lot's first shipment: the next one is (bag-and-tag)
            j.set(s.bags, c.lot_id, Bag(*c.registered_bag, shipped=False))
            if c.lot_id in s.shipped_tags:
                j.pop(s.shipped_tags, c.lot_id)


# --- the writes -------------------------------------------------------------------------------------------------

INSERT_CORRECTIONS_SQL = """
INSERT INTO corrections (correction_id, lot_id, event_id, corrected_type, reason, note, declared_by, declared_at,
                         effect, shipment_id, corrective_event_ids)
SELECT u.correction_id, u.lot_id, u.event_id, u.corrected_type, u.reason, u.note, u.declared_by, u.declared_at,
       u.effect, u.shipment_id, ARRAY(SELECT jsonb_array_elements_text(u.ids))
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
            $9::text[], $10::text[], $11::jsonb[])
     AS u(correction_id, lot_id, event_id, corrected_type, reason, note, declared_by, declared_at, effect,
          shipment_id, ids)
ON CONFLICT DO NOTHING
"""
VOID_SHIPMENTS_SQL = "UPDATE shipments SET status = 'voided' WHERE shipment_id = ANY($1::text[]) AND status <> 'voided'"
CANDIDATES_SQL = """
SELECT id, rule, cause, severity, lot_ids, evidence FROM flags
WHERE lot_ids && $1::text[] AND status <> 'withdrawn' AND NOT evidence ? 'correction'
"""
"""The flags of the corrected lots that may be grounded on a corrected event (`grounds` decides)."""
MARKED_SQL = """
SELECT f.id, f.rule, f.cause, f.severity, f.severity AS previous_severity, f.lot_id, f.lot_ids, f.participants,
       f.raised_at, f.status AS previous_status, f.evidence AS previous_evidence, f.summary AS previous_summary,
       f.evidence || jsonb_build_object('correction', u.correction) AS evidence, f.summary || u.note AS summary,
       f.status, NULL::jsonb AS cleared_by, u.event_id,
       f.status NOT IN ('open', 'withdrawn') OR EXISTS (SELECT 1 FROM flag_decisions x WHERE x.flag_id = f.id)
           AS decided
FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::text[]) AS u(id, correction, note, event_id)
JOIN flags f ON f.id = u.id
WHERE NOT f.evidence ? 'correction'
FOR UPDATE OF f
"""
MARK_FLAGS_SQL = "UPDATE flags f SET evidence = r.evidence, summary = r.summary FROM rejudged r WHERE f.id = r.id"


def _columns(corrections: Sequence[Correction]) -> list[Any]:
    """INSERT_CORRECTIONS_SQL's arguments (the corrective event ids as JSON arrays)."""
    cols = [list(col) for col in zip(*(c.row for c in corrections), strict=True)]
    return [*cols[:10], [orjson.dumps(ids).decode() for ids in cols[10]]]


async def write(conn: asyncpg.Connection, projection: Projection, corrections: Sequence[Correction]) -> None:
    """The batch's corrections: their rows, the shipments they voided, the flags they mark, the findings they are
    worth (`record_corrected`, raised through the projection like any finding)."""
    await conn.execute(INSERT_CORRECTIONS_SQL, *_columns(corrections))
    voided = [sid for c in corrections if (sid := c.voids) is not None]
    if voided:
        await conn.execute(VOID_SHIPMENTS_SQL, voided)
    flags = [_flag(r) for r in await conn.fetch(CANDIDATES_SQL, sorted({c.lot_id for c in corrections}))]
    marks: dict[str, Correction] = {}  # flag id -> the first declared correction of its grounds
    for f in flags:
        grounding = [c for c in corrections if c.lot_id in f["lot_ids"] and grounds(f, c)]
        if grounding:
            marks[f["id"]] = min(grounding, key=lambda c: c.order)
    if marks:
        await _mark(conn, marks, projection.publish)
    found = []
    for c in corrections:
        serious = [
            {"id": f["id"], "rule": f["rule"], "severity": f["severity"]}
            for f in flags
            if marks.get(f["id"]) is c and f["severity"] in SERIOUS
        ]
        if (finding := record_corrected(c, serious)) is not None:
            found.append(finding)
    await projection.raise_flags(conn, found)


def _flag(r: asyncpg.Record) -> dict[str, Any]:
    evidence = r["evidence"]
    return {
        "id": r["id"],
        "rule": r["rule"],
        "cause": r["cause"],
        "severity": r["severity"],
        "lot_ids": list(r["lot_ids"]),
        "evidence": orjson.loads(evidence) if isinstance(evidence, str) else evidence,
    }


async def _mark(conn: asyncpg.Connection, marks: dict[str, Correction], publish: bool) -> None:
    """Each flag gets its correction in its evidence and a note in its summary, its former evidence kept in
    `flag_evidence_history` and, live, an `audit.flag.updated` event (the statements of a re-judgement)."""
    ids = sorted(marks)
    args = [
        ids,
        [orjson.dumps(marks[i].mark).decode() for i in ids],
        [summary_note(marks[i].reason) for i in ids],
        [str(uuid.uuid5(MARKS, f"{marks[i].correction_id}:{i}")) for i in ids],
    ]
    at = datetime.now(UTC)
    st = Statement()
    st.add("rejudged", MARKED_SQL, args)
    st.add("marked", MARK_FLAGS_SQL, [])
    st.add("marked_history", statements.INSERT_EVIDENCE_HISTORY_SQL, [at])
    if publish:
        st.add(
            "marked_events",
            statements.INSERT_FLAG_UPDATED_EVENTS_SQL,
            [at, AUDIT_FLAGS, SOURCE, dataschema_for("audit.flag.updated", 1)],
        )
    await conn.execute(st.sql("SELECT 1"), *st.args)


def has_corrections(events: Sequence[CloudEvent]) -> bool:
    """Whether a batch holds a correction (the one-statement path declines it: `write` needs its own statements)."""
    return any(e.type == CORRECTED for e in events)
