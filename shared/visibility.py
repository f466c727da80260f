"""Who may see a lot or a flag: the one place that says it, for every service that answers such a question
(custody's lots, histories and traces; audit's flags, risk summaries and live stream). Each service runs it on its
own `genealogy(parent, child, ...)` and `lot_holders(lot_id, participant_id)` tables.

- The operator sees everything.
- A participant sees a lot it holds or held, and every lot upstream of one (what its material was made from):
  a lot from which a lot it holds or held was made, at most `max_depth` transformations down. The depth is one
  setting, `TRACE_MAX_DEPTH` (`GenealogySettings`), for traces and visibility alike.
- A participant sees a flag that names it (it is one of the parties the finding is about) or that concerns a lot
  it holds or held.
- On the live stream a participant sees the custody events it did itself, and the flags it may see.

What a participant sees is decided here and nowhere else; the SQL fragments and the Python predicates below say the
same thing, and `tests/shared/test_visibility.py` holds them to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.genealogy import walk_sql


def lot_visible_sql(depth_limit: str) -> str:
    """One statement: may participant $2 see lot $1? (It holds or held the lot, or something made from it, at most
    `depth_limit` steps down: a parameter such as `$3`, or a literal.)"""
    return walk_sql(upstream=False, depth_limit=depth_limit) + (
        "SELECT EXISTS (SELECT 1 FROM lot_holders h JOIN reached USING (lot_id) WHERE h.participant_id = $2)"
    )


def flag_visible_sql(participant: str) -> str:
    """A condition on a `flags` row (columns `participants` and `lot_ids`): may `participant` (a parameter such as
    `$2`) see it?"""
    return (
        f"({participant} = ANY(participants) OR lot_ids && "
        f"ARRAY(SELECT lot_id FROM lot_holders WHERE participant_id = {participant}))"
    )


def named_in_flag(participant: str, participants: Iterable[str]) -> bool:
    """The first half of `flag_visible_sql`, for a flag in memory; the other half (a lot it holds or held) needs
    the holders table: `sees_flag`."""
    return participant in participants


def sees_flag(participant: str, participants: Iterable[str], lot_ids: Iterable[str], held: Iterable[str]) -> bool:
    """`flag_visible_sql` in Python: `held` are the flag's lots that `participant` holds or held."""
    return named_in_flag(participant, participants) or not set(lot_ids).isdisjoint(held)


def sees_custody_event(participant: str, actor: str | None) -> bool:
    """A custody event on the live stream: a participant sees the ones it did itself."""
    return actor == participant
