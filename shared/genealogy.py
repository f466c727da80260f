"""The genealogy walk both custody and audit run on their own transformation tables and `lot_holders` (each service
its own database; the SQL is the same). Who may see what is `shared.visibility`.

A transformation's lots are stored once, n + m rows, never n x m edges:
`transformation_inputs(transformation_id, lot_id, position, ...)` and `transformation_outputs(transformation_id,
lot_id, position, ...)`. One step of a walk goes through the transformation: upstream from a lot to the inputs of the
transformation that made it, downstream from a lot to the outputs of every transformation it was drawn into.

A walk stops at its depth limit. A lot reached at the limit that goes on (it was made by a transformation, or drawn
into one) is where the walk was cut: `frontier_sql` finds them, and an answer that stopped there says so
(`Truncated`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


def walk_sql(*, upstream: bool, depth_limit: str = "$2", seed: str = "SELECT $1::text, 0") -> str:
    """The recursive walk from lot $1, up (to the lots it was made from) or down (to the lots made from it), at most
    `depth_limit` steps (a parameter such as `$2` or a literal); `reached` holds each lot once with its shortest
    depth. `seed`: where the walk starts, (lot id, 0) rows (e.g. `SELECT unnest($1::text[]), 0` for several lots)."""
    here, there = _step(upstream)
    return f"""
WITH RECURSIVE walk(lot_id, depth) AS (
  {seed}
  UNION
  SELECT n.lot_id, walk.depth + 1
  FROM walk JOIN {here} h ON h.lot_id = walk.lot_id JOIN {there} n ON n.transformation_id = h.transformation_id
  WHERE walk.depth < {depth_limit}
), reached AS (SELECT lot_id, min(depth) AS depth FROM walk GROUP BY lot_id)
"""


def goes_on_sql(*, upstream: bool, lot: str) -> str:
    """A condition: the walk could take another step from `lot` (an SQL expression naming a lot id)."""
    here, _ = _step(upstream)
    # OFFSET 0: an index probe per lot asked about; else PostgreSQL may hash the whole table once per statement
    return f"EXISTS (SELECT 1 FROM {here} f WHERE f.lot_id = {lot} OFFSET 0)"


def frontier_sql(*, upstream: bool, depth_limit: str = "$2") -> str:
    """After `walk_sql`: the lots where the walk was cut (reached at the limit, and it goes on from them)."""
    cond = goes_on_sql(upstream=upstream, lot="r.lot_id")
    return f"SELECT r.lot_id FROM reached r WHERE r.depth = {depth_limit} AND {cond} ORDER BY r.lot_id"


class Truncated(BaseModel):
    """Where and why an answer that walks the genealogy stopped before its end. Absent (null) when it is complete."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "max_depth", "max_depth": 100, "at_lots": ["LOT-5C0E2F6A1B7D4E93"]}]}
    )

    reason: Literal["max_depth"] = Field(
        description="`max_depth`: the walk went as deep as it may (`TRACE_MAX_DEPTH`) and the genealogy goes on"
    )
    max_depth: int = Field(description="How many transformation steps the walk followed")
    at_lots: list[str] = Field(
        description="The lots at that depth from which the genealogy goes on (not followed); ask about one of them "
        "to see further"
    )


def truncated(max_depth: int, at_lots: list[str]) -> dict[str, Any] | None:
    """The `truncated` member of an answer (`Truncated` as JSON): None when nothing was cut."""
    return {"reason": "max_depth", "max_depth": max_depth, "at_lots": at_lots} if at_lots else None
