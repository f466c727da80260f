"""The genealogy walk both custody and audit run on their own transformation tables and `lot_holders` (each service
its own database; the SQL is the same). Who may see what is `shared.visibility`.

A transformation's lots are stored once, n + m rows, never n x m edges:
`transformation_inputs(transformation_id, lot_id, position, ...)` and `transformation_outputs(transformation_id,
lot_id, position, ...)`. One step of a walk goes through the transformation: upstream from a lot to the inputs of the
transformation that made it, downstream from a lot to the outputs of every transformation it was drawn into. The
walk visits the transformation itself as a hub (a lot, then its transformation, then that transformation's other
side), so a step through a transformation of n inputs and m outputs costs n + m rows, never n x m, however many of
its lots the walk holds.

A walk stops at its depth limit, and, when given one, at a number of lots (`max_lots`: the first lots in breadth-first
order, every lot up to the depth before the one where the limit was reached: `walk_end`). A lot reached at the depth
where the walk stopped that goes on (it was made by a transformation, or drawn into one) is where the walk was cut:
`frontier_sql` finds them, and an answer that stopped there says so (`Truncated`: why, the limit, and where)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def _step(upstream: bool) -> tuple[str, str]:
    """(the table the walked lot is in, the table the next lots come from)."""
    return (
        ("transformation_outputs", "transformation_inputs")
        if upstream
        else (
            "transformation_inputs",
            "transformation_outputs",
        )
    )


def walk_sql(
    *, upstream: bool, depth_limit: str = "$2", seed: str = "SELECT $1::text, 0", max_lots: str | None = None
) -> str:
    """The recursive walk from lot $1, up (to the lots it was made from) or down (to the lots made from it), at most
    `depth_limit` steps (a parameter such as `$2` or a literal); `reached` holds each lot once with its shortest
    depth. `seed`: where the walk starts, (lot id, 0) rows (e.g. `SELECT unnest($1::text[]), 0` for several lots).

    `walk` alternates lot rows (`lot` true) and transformation rows (the hub of one step, at the depth of the lot it
    was reached from); PostgreSQL's UNION keeps each (id, kind, depth) once, so a transformation's n inputs reaching
    it make one row, not n x m. Lot rows come out depth by depth (breadth first).

    `max_lots` (a parameter such as `$4`, or a literal): the walk stops once it has reached more lots than that
    (a LIMIT on the recursion: PostgreSQL then stops recursing) and `reached` keeps the depths it saw whole, so at
    most `max_lots` lots. `walk_end(depth, lots_cut)`: the depth the walk stopped at, and whether `max_lots` did it
    (without `max_lots`, `depth_limit` and false)."""
    here, there = _step(upstream)
    walk = f"""
WITH RECURSIVE walk(id, lot, depth) AS (
  SELECT s0.id, true, s0.depth FROM ({seed}) s0(id, depth)
  UNION
  SELECT s.id, s.lot, s.depth FROM walk CROSS JOIN LATERAL (
    SELECT h.transformation_id AS id, false AS lot, walk.depth FROM {here} h
    WHERE walk.lot AND walk.depth < {depth_limit} AND h.lot_id = walk.id
    UNION ALL
    SELECT n.lot_id, true, walk.depth + 1 FROM {there} n WHERE NOT walk.lot AND n.transformation_id = walk.id
  ) s
)"""
    if max_lots is None:
        return (
            walk
            + f""", walk_end AS (SELECT ({depth_limit})::int AS depth, false AS lots_cut),
reached AS (SELECT id AS lot_id, min(depth) AS depth FROM walk WHERE lot GROUP BY id)
"""
        )
    return (
        walk
        + f""", walked AS MATERIALIZED (SELECT id, depth FROM walk WHERE lot LIMIT ({max_lots})::int + 1),
walk_end AS MATERIALIZED (
  SELECT CASE WHEN count(*) > ({max_lots})::int THEN max(depth) - 1 ELSE ({depth_limit})::int END AS depth,
         count(*) > ({max_lots})::int AS lots_cut
  FROM walked
), reached AS (
  SELECT id AS lot_id, min(depth) AS depth FROM walked GROUP BY id HAVING min(depth) <= (SELECT depth FROM walk_end)
)
"""
    )


def goes_on_sql(*, upstream: bool, lot: str) -> str:
    """A condition: the walk could take another step from `lot` (an SQL expression naming a lot id)."""
    here, _ = _step(upstream)
    # OFFSET 0: an index probe per lot asked about; else PostgreSQL may hash the whole table once per statement
    return f"EXISTS (SELECT 1 FROM {here} f WHERE f.lot_id = {lot} OFFSET 0)"


def frontier_sql(*, upstream: bool, depth_limit: str = "$2") -> str:
    """After `walk_sql`: the lots where the walk was cut (reached at the limit, and it goes on from them)."""
    cond = goes_on_sql(upstream=upstream, lot="r.lot_id")
    return f"SELECT r.lot_id FROM reached r WHERE r.depth = {depth_limit} AND {cond} ORDER BY r.lot_id"


_AT_LOTS = (
    "The lots at that depth from which the genealogy goes on (not followed); ask about one of them to see further"
)


class TruncatedDepth(BaseModel):
    """The walk went as deep as it may."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "max_depth", "max_depth": 100, "at_lots": ["LOT-5C0E2F6A1B7D4E93"]}]}
    )

    reason: Literal["max_depth"] = Field(
        description="`max_depth`: the walk went as deep as it may (`TRACE_MAX_DEPTH`) and the genealogy goes on"
    )
    max_depth: int = Field(description="How many transformation steps the walk followed")
    at_lots: list[str] = Field(description=_AT_LOTS)


class TruncatedLots(BaseModel):
    """The walk reached as many lots as an answer may hold: it holds every lot up to `max_depth` steps."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"reason": "max_lots", "max_lots": 10000, "max_depth": 3, "at_lots": ["LOT-5C0E2F6A1B7D4E93"]}]
        }
    )

    reason: Literal["max_lots"] = Field(
        description="`max_lots`: one more step would have taken the answer past `max_lots` lots (`TRACE_MAX_LOTS`)"
    )
    max_lots: int = Field(description="The most lots an answer holds")
    max_depth: int = Field(description="How many transformation steps the walk followed (all of them whole)")
    at_lots: list[str] = Field(description=_AT_LOTS)


class TruncatedEdges(BaseModel):
    """The trace's edges (an input and an output of one transformation, both in the trace) would be more than an
    answer may hold: it holds every lot and edge up to `max_depth` steps."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"reason": "max_edges", "max_edges": 50000, "max_depth": 1, "at_lots": ["LOT-5C0E2F6A1B7D4E93"]}
            ]
        }
    )

    reason: Literal["max_edges"] = Field(
        description="`max_edges`: one more step would have taken the trace past `max_edges` edges "
        "(`TRACE_MAX_EDGES`; an edge is an input and an output of one transformation)"
    )
    max_edges: int = Field(description="The most edges a trace holds")
    max_depth: int = Field(description="How many transformation steps the trace followed (all of them whole)")
    at_lots: list[str] = Field(description=_AT_LOTS)


Truncated = Annotated[
    TruncatedDepth | TruncatedLots | TruncatedEdges,
    Field(
        discriminator="reason",
        description="Where and why an answer that walks the genealogy stopped before its end. Absent (null) when it "
        "is complete.",
    ),
]
TRUNCATED: TypeAdapter[TruncatedDepth | TruncatedLots | TruncatedEdges] = TypeAdapter(Truncated)

Reason = Literal["max_depth", "max_lots", "max_edges"]


def truncated(
    max_depth: int, at_lots: list[str], *, reason: Reason = "max_depth", limit: int | None = None
) -> dict[str, Any] | None:
    """The `truncated` member of an answer (`Truncated` as JSON): None when nothing was cut. `max_depth`: the depth
    the walk stopped at; `reason` and `limit`: which limit stopped it (`max_lots`, `max_edges`: always a cut, even
    when no lot at that depth is in the answer)."""
    if reason == "max_depth":
        return {"reason": "max_depth", "max_depth": max_depth, "at_lots": at_lots} if at_lots else None
    return {"reason": reason, reason: limit, "max_depth": max_depth, "at_lots": at_lots}


def edge_depth(counts: list[tuple[str, bool, int, int]], max_edges: int, max_depth: int) -> int:
    """The deepest depth <= `max_depth` at which a trace holds at most `max_edges` edges, from (transformation id,
    input side, depth, lots) counts of the trace's lots on each side of each transformation: an edge is an input and
    an output of one transformation, both in the trace, so up to depth d a transformation with a inputs and b outputs
    at depth <= d has a x b of them (counted here, never built)."""
    per_t: dict[str, dict[int, list[int]]] = {}
    for tid, is_input, depth, n in counts:
        per_t.setdefault(tid, {}).setdefault(depth, [0, 0])[0 if is_input else 1] += n
    added: dict[int, int] = {}
    for by_depth in per_t.values():
        a = b = before = 0
        for depth in sorted(by_depth):
            a += by_depth[depth][0]
            b += by_depth[depth][1]
            added[depth] = added.get(depth, 0) + a * b - before
            before = a * b
    total = 0
    for depth in range(max_depth + 1):
        total += added.get(depth, 0)
        if total > max_edges:
            return max(depth - 1, 0)
    return max_depth
