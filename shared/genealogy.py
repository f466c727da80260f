"""The genealogy walk both custody and audit run on their own `genealogy(parent, child, ...)` and `lot_holders`
tables (each service its own database; the SQL is the same). Who may see what is `shared.visibility`."""

from __future__ import annotations


def walk_sql(*, upstream: bool, depth_limit: str = "$2") -> str:
    """The recursive walk from lot $1, up (to parents) or down (to children), at most `depth_limit` steps (a
    parameter such as `$2` or a literal); `reached` holds each lot once with its shortest depth."""
    step, join = ("g.parent", "g.child") if upstream else ("g.child", "g.parent")
    return f"""
WITH RECURSIVE walk(lot_id, depth) AS (
  SELECT $1::text, 0
  UNION
  SELECT {step}, walk.depth + 1 FROM genealogy g JOIN walk ON {join} = walk.lot_id WHERE walk.depth < {depth_limit}
), reached AS (SELECT lot_id, min(depth) AS depth FROM walk GROUP BY lot_id)
"""
