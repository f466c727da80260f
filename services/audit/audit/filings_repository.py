"""What the filings read from audit's projection: the upstream genealogy of some lots as a `filings_domain.Graph`
(`upstream_graph`), the roots a filer asks about (its consumptions, the lots it received), its latest self-assessment
and the flags upstream it may see. Plain SQL on asyncpg, arrays in and out, no ORM: the CMRT export of a large
manufacturer is benchmarked against the bare recursive walk (bench/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from audit.cmrt import FlagSeen
from audit.filings_domain import Graph, LotFacts, PartyFacts, Step
from audit.repository import FLAG_EVENT_AT
from audit.rules import Cert
from shared.genealogy import goes_on_sql, walk_sql
from shared.visibility import flag_reach_cte, flag_visible_sql

# audit's `lots.origin_kind` as the graph names it (`filings_domain.LotFacts.origin_kind`)
ORIGIN_KINDS = {"external": "declared"}

# One statement: the walk up from the roots ($1), at most $2 transformations and $3 lots (`shared.genealogy`), each
# lot reached with its facts, the transformation that made it when the walk went through it (a lot at the depth where
# the walk stopped is where it was cut: `goes_on`), and the walk's end.
GRAPH_LOTS_SQL = (
    walk_sql(upstream=True, seed="SELECT unnest($1::text[]), 0", max_lots="$3")
    + f"""
SELECT l.lot_id, l.mineral, l.form, l.mass_kg, l.origin_kind, l.origin_participant, l.origin_country, l.origin_region,
       l.origin_mining_type, l.origin_source, l.origin_at,
       CASE WHEN r.depth < e.depth THEN o.transformation_id END AS made_by,
       r.depth >= e.depth AND {goes_on_sql(upstream=True, lot="r.lot_id")} AS goes_on,
       e.lots_cut
FROM reached r CROSS JOIN walk_end e
JOIN lots l ON l.lot_id = r.lot_id
LEFT JOIN transformation_outputs o ON o.lot_id = r.lot_id
"""
)
# The transformations of the graph with their inputs (in the order given, with the mass drawn) and outputs.
GRAPH_STEPS_SQL = """
SELECT t.transformation_id, t.kind, t.actor, t.actor_kind, t.occurred_at, t.custody_model, t.outputs,
       ARRAY(SELECT i.lot_id FROM transformation_inputs i WHERE i.transformation_id = t.transformation_id
             ORDER BY i.position) AS input_ids,
       ARRAY(SELECT coalesce(i.mass_kg, 0) FROM transformation_inputs i WHERE i.transformation_id = t.transformation_id
             ORDER BY i.position) AS input_kg
FROM transformations t WHERE t.transformation_id = ANY($1::text[])
"""
# The participants named (origins' and transformers'), each with its certifications as arrays (in the order known:
# `audit.rules.held` takes the latest recorded).
GRAPH_PARTIES_SQL = """
SELECT p.id, p.kind, p.name, p.country, p.region, p.rmi_smelter_id, p.disclosure,
       c.schemes, c.vals, c.froms, c.untils
FROM participants p
LEFT JOIN LATERAL (
  SELECT array_agg(scheme ORDER BY known_at, id) AS schemes, array_agg(value ORDER BY known_at, id) AS vals,
         array_agg(valid_from ORDER BY known_at, id) AS froms, array_agg(valid_until ORDER BY known_at, id) AS untils
  FROM certifications WHERE participant_id = p.id
) c ON true
WHERE p.id = ANY($1::text[])
"""


async def upstream_graph(
    conn: asyncpg.Connection, roots: list[str], *, max_depth: int = 50, max_lots: int = 100_000
) -> Graph:
    """The upstream genealogy of `roots` (lot ids): every lot reached at most `max_depth` transformations up (and at
    most `max_lots` lots, whole depths: `shared.genealogy.walk_sql`), the transformations that made them, and the
    participants named with their certifications. `truncated`: a bound stopped the walk where the genealogy goes on
    (the lots there are in the graph as if they were origins: no `made_by`). Three statements: the walk with the
    lots, the transformations, the participants."""
    g = Graph()
    if not roots:
        return g
    made_by: dict[str, str] = {}
    truncated = False
    for r in await conn.fetch(GRAPH_LOTS_SQL, roots, max_depth, max_lots):
        lot_id = r["lot_id"]
        g.lots[lot_id] = LotFacts(
            lot_id,
            r["mineral"],
            r["form"],
            r["mass_kg"],
            ORIGIN_KINDS.get(r["origin_kind"], r["origin_kind"]),
            r["origin_participant"],
            r["origin_country"],
            r["origin_region"],
            r["origin_mining_type"],
            r["origin_source"],
            r["origin_at"],
        )
        if r["made_by"] is not None:
            made_by[lot_id] = r["made_by"]
        truncated = truncated or r["goes_on"] or r["lots_cut"]
    steps: dict[str, Step] = {}
    if made_by:
        for r in await conn.fetch(GRAPH_STEPS_SQL, list(set(made_by.values()))):
            steps[r["transformation_id"]] = Step(
                r["transformation_id"],
                r["kind"],
                r["actor"],
                r["actor_kind"],
                r["occurred_at"],
                r["custody_model"],
                tuple(zip(r["input_ids"], r["input_kg"], strict=True)),
                tuple(r["outputs"]),
            )
    g.made_by = {lot: steps[t] for lot, t in made_by.items() if t in steps}
    who = {f.origin_participant for f in g.lots.values() if f.origin_participant is not None}
    who.update(s.actor for s in steps.values())
    await _parties(conn, g, who)
    g.truncated = truncated
    return g


async def _parties(conn: asyncpg.Connection, g: Graph, ids: set[str]) -> None:
    if not ids:
        return
    for r in await conn.fetch(GRAPH_PARTIES_SQL, sorted(ids)):
        pid = r["id"]
        g.parties[pid] = PartyFacts(
            pid, r["kind"], r["name"], r["country"], r["region"], r["rmi_smelter_id"], r["disclosure"]
        )
        if r["schemes"]:
            g.certs[pid] = [
                Cert(s, v, f, u, n)
                for n, (s, v, f, u) in enumerate(zip(r["schemes"], r["vals"], r["froms"], r["untils"], strict=True))
            ]


# --- the roots a filer asks about -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Root:
    """A lot the filer consumed (or received) in the period: how much, when, into which product."""

    lot_id: str
    kg: Decimal
    at: datetime
    product_id: str | None
    product: str | None  # the free text a consumption named (or, for a received lot, None)
    ref: str  # the consumption's id, or the shipment's


CONSUMED_SQL = """
SELECT c.consumption_id AS ref, c.lot_id, c.mass_kg, c.consumed_at AS at, c.product_id, c.product
FROM consumptions c
WHERE c.actor = $1 AND c.consumed_at >= $2 AND c.consumed_at < $3
  AND (cardinality($4::text[]) = 0 OR c.product_id = ANY($4::text[]))
ORDER BY c.consumed_at, c.consumption_id
LIMIT $5
"""
# The receipt's time is in its event (`received_events`, found by its lot: the events' subject index).
RECEIVED_SQL = """
SELECT s.shipment_id AS ref, s.lot_id, s.mass_kg, s.shipped_at AS at, NULL::text AS product_id, NULL::text AS product
FROM shipments s JOIN received_events e ON e.subject = s.lot_id AND e.source = '/custody'
     AND e.type = 'custody.lot.received' AND e.data->>'shipment_id' = s.shipment_id
WHERE s.receiver = $1 AND s.status = 'received' AND (e.data->>'occurred_at')::timestamptz >= $2
  AND (e.data->>'occurred_at')::timestamptz < $3 AND cardinality($4::text[]) = 0
ORDER BY s.shipped_at, s.shipment_id
LIMIT $5
"""


async def roots(
    conn: asyncpg.Connection,
    participant: str,
    start: datetime,
    end: datetime,
    products: Sequence[str],
    *,
    basis: str,
    limit: int,
) -> list[Root]:
    """The filer's consumptions in [start, end) (for `products` when given), or the lots it received then
    (`basis="received"`): at most `limit` (+1, so that the caller can tell there were more)."""
    sql = RECEIVED_SQL if basis == "received" else CONSUMED_SQL
    rows = await conn.fetch(sql, participant, start, end, list(products), limit + 1)
    return [Root(r["lot_id"], r["mass_kg"], r["at"], r["product_id"], r["product"], r["ref"]) for r in rows]


async def products_of(conn: asyncpg.Connection, owner: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The owner's products among `ids` (another's or an unknown id is absent)."""
    rows = await conn.fetch(
        "SELECT product_id, name, gtin FROM products WHERE owner = $1 AND product_id = ANY($2::text[])",
        owner,
        list(ids),
    )
    return {r["product_id"]: dict(r) for r in rows}


async def participant(conn: asyncpg.Connection, pid: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, kind, name, country, disclosure FROM participants WHERE id = $1", pid)


# --- what the filer may see upstream ---------------------------------------------------------------------------

FLAGS_ON_SQL = """
SELECT f.id, f.rule, f.status, fl.lot FROM flags f CROSS JOIN LATERAL unnest(f.lot_ids) AS fl(lot)
WHERE f.lot_ids && $1::text[] AND fl.lot = ANY($1::text[]) AND f.status <> 'withdrawn'
"""


def _flags_for_sql() -> str:
    """FLAGS_ON_SQL for participant $2: only the flags it may see (`shared.visibility.flag_visible_sql`, as audit's
    flag list decides it: `audit.repository.FLAG_EVENT_AT`)."""
    return (
        f"WITH {flag_reach_cte('$2', '$3')} "
        + FLAGS_ON_SQL.replace("FROM flags f", "FROM flag_reach, flags f")
        + " AND "
        + flag_visible_sql("$2", event_at=FLAG_EVENT_AT.replace("flags.", "f."), reach="flag_reach")
    )


FLAGS_FOR_SQL = _flags_for_sql()


async def flags_on(
    conn: asyncpg.Connection, lots: list[str], viewer: str | None, max_depth: int
) -> dict[str, list[FlagSeen]]:
    """The flags (open, resolved; not withdrawn) on `lots` that `viewer` may see (None: all of them), by lot."""
    if viewer is None:
        rows = await conn.fetch(FLAGS_ON_SQL, lots)
    else:
        rows = await conn.fetch(FLAGS_FOR_SQL, lots, viewer, max_depth)
    out: dict[str, list[FlagSeen]] = {}
    for r in rows:
        out.setdefault(r["lot"], []).append(FlagSeen(r["id"], r["rule"], r["status"]))
    return out


LATEST_ASSESSMENT_SQL = """
SELECT assessment_id, submitted_at, questionnaire_version, total, cmrt_answers::text AS cmrt_answers
FROM self_assessments WHERE participant_id = $1 ORDER BY submitted_at DESC, assessment_id DESC LIMIT 1
"""


async def latest_assessment(conn: asyncpg.Connection, participant_id: str) -> dict[str, Any] | None:
    """The participant's latest self-assessment (part S's `self_assessments`), or None: what the CMRT's company-level
    answers (`cmrt_answers`) and the battery passport's due-diligence policy (`questionnaire_version`, `total`) read."""
    r = await conn.fetchrow(LATEST_ASSESSMENT_SQL, participant_id)
    if r is None:
        return None
    return {
        "assessment_id": r["assessment_id"],
        "submitted_at": r["submitted_at"],
        "questionnaire_version": r["questionnaire_version"],
        "total": r["total"],
        "cmrt_answers": orjson.loads(r["cmrt_answers"]) if r["cmrt_answers"] else {},
    }


async def cahra_countries(conn: asyncpg.Connection, on: date) -> list[str]:
    """The countries with a conflict-affected or high-risk area in force on `on` (the EMRT's first question)."""
    rows = await conn.fetch(
        "SELECT DISTINCT country FROM cahra_areas WHERE effective_from <= $1 "
        "AND (effective_to IS NULL OR $1 <= effective_to)",
        on,
    )
    return [r["country"] for r in rows]


# --- part R: the battery passport's risks and policy --------------------------------------------------------------

DECISIONS_ON_SQL = """
SELECT flag_id, kind, decided_by, decided_by_kind, decided_at, note FROM flag_decisions
WHERE flag_id = ANY($1::text[]) ORDER BY seq
"""


async def decisions_on(conn: asyncpg.Connection, flag_ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
    """The decisions on these flags, oldest first, by flag (one statement)."""
    out: dict[str, list[asyncpg.Record]] = {}
    if flag_ids:
        for r in await conn.fetch(DECISIONS_ON_SQL, list(flag_ids)):
            out.setdefault(r["flag_id"], []).append(r)
    return out
