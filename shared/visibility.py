"""Who may see a lot or a flag: the one place that says it, for every service that answers such a question
(custody's lots, histories and traces; audit's flags, risk summaries and live stream). Each service runs it on its
own `genealogy(parent, child, ...)` and `lot_holders(lot_id, participant_id)` tables.

- The operator sees everything.
- A participant sees a lot it holds or held, and every lot upstream of one (what its material was made from):
  a lot from which a lot it holds or held was made, at most `max_depth` transformations down. The depth is one
  setting, `TRACE_MAX_DEPTH` (`GenealogySettings`), for traces and visibility alike.
- A participant sees a flag that names it (it is one of the parties the finding is about) or that affects a lot it
  holds or held: the flag's own lots and every lot made from them (at most `max_depth` transformations down), so a
  downstream holder sees what its material inherits. (Compliance officers see every flag; what a flag shows of the
  parties' identities is the same for everyone who sees it: `flag_parties` is the seam for disclosure rules.)
- On the live stream a participant sees the custody events it did itself, and the flags it may see.
- A regulator sees, in full, the lots its grant opens: each granted lot, each lot a granted participant holds or held,
  and every lot upstream of those (`grant_lots_sql`), and the flags on them.

What a participant sees is decided here and nowhere else; the SQL fragments and the Python predicates below say the
same thing, and `tests/shared/test_visibility.py` holds them to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from shared.genealogy import walk_sql
from shared.vocab import Disclosure, effective_disclosure


def lot_visible_sql(depth_limit: str) -> str:
    """One statement: may participant $2 see lot $1? (It holds or held the lot, or something made from it, at most
    `depth_limit` steps down: a parameter such as `$3`, or a literal.)"""
    return walk_sql(upstream=False, depth_limit=depth_limit) + (
        "SELECT EXISTS (SELECT 1 FROM lot_holders h JOIN reached USING (lot_id) WHERE h.participant_id = $2)"
    )


def lots_affecting_sql(participant: str, depth_limit: str) -> str:
    """A query: every lot whose flags affect what `participant` holds or held: the lots it holds or held and every
    lot upstream of them, at most `depth_limit` steps (lot_visible_sql's walk, started from all of its lots)."""
    seed = f"SELECT lot_id, 0 FROM lot_holders WHERE participant_id = {participant}"
    return walk_sql(upstream=True, depth_limit=depth_limit, seed=seed) + "SELECT lot_id FROM reached"


def flag_visible_sql(participant: str, depth_limit: str = "100") -> str:
    """A condition on a `flags` row (columns `participants` and `lot_ids`): may `participant` (a parameter such as
    `$2`) see it? Named in it, or on a lot it holds or held or one upstream of such a lot (`depth_limit` steps)."""
    return f"({participant} = ANY(participants) OR lot_ids && ARRAY({lots_affecting_sql(participant, depth_limit)}))"


def officer_flag_sql(scope: str) -> str:
    """A condition on a `flags` row: does an officer scoped to `scope` (a text[] parameter such as `$2`) oversee it?
    It names one of them, or one of them holds or held one of its lots (`audit.domain.officer_covers`). An officer
    scoped to all sees every flag: no condition."""
    return (
        f"(participants && {scope}::text[] OR lot_ids && "
        f"ARRAY(SELECT lot_id FROM lot_holders WHERE participant_id = ANY({scope}::text[])))"
    )


def affected_lots_sql(lot_ids: str, depth_limit: str) -> str:
    """A query: the lots a flag on `lot_ids` (a text[] parameter such as `$1`) affects: those lots and every lot
    made from them, at most `depth_limit` steps down, each with its depth."""
    seed = f"SELECT unnest({lot_ids}::text[]), 0"
    return walk_sql(upstream=False, depth_limit=depth_limit, seed=seed) + "SELECT lot_id, depth FROM reached"


def grant_lots_sql(lots: str, participants: str, depth_limit: str) -> str:
    """A query: the lots a regulator's grant opens: the granted lots (`lots`, a text[] parameter such as `$1`) and
    every lot the granted participants (`participants`, a text[] parameter) hold or held, and every lot upstream of
    any of them, at most `depth_limit` steps (`lots_affecting_sql`'s walk, seeded by the grant). Python: `grant_opens`.
    """
    seed = (
        f"SELECT unnest({lots}::text[]), 0 UNION "
        f"SELECT lot_id, 0 FROM lot_holders WHERE participant_id = ANY({participants}::text[])"
    )
    return walk_sql(upstream=True, depth_limit=depth_limit, seed=seed) + "SELECT lot_id FROM reached"


def grant_opens_lot_sql(lot: str, lots: str, participants: str, depth_limit: str) -> str:
    """One statement: does a regulator's grant (`lots`, `participants`: text[] parameters) open lot `lot` (a
    parameter)? It is a granted lot, or a granted participant holds or held it, or either holds for a lot made from
    it, at most `depth_limit` steps down (`lot_visible_sql`'s walk, from the one lot). Python: `grant_opens`."""
    seed = f"SELECT {lot}::text, 0"
    return walk_sql(upstream=False, depth_limit=depth_limit, seed=seed) + (
        f"SELECT EXISTS (SELECT 1 FROM reached WHERE lot_id = ANY({lots}::text[])) OR EXISTS (SELECT 1 FROM "
        f"lot_holders h JOIN reached USING (lot_id) WHERE h.participant_id = ANY({participants}::text[]))"
    )


def grant_opens(
    grant_lots: Iterable[str], grant_participants: Iterable[str], reached: Iterable[str], holders: Iterable[str]
) -> bool:
    """`grant_lots_sql` / `grant_opens_lot_sql` in Python, for one lot: `reached` is the lot and every lot made from
    it (within the depth), `holders` everyone who holds or held one of them."""
    return not set(reached).isdisjoint(grant_lots) or not set(holders).isdisjoint(grant_participants)


Relation = Literal["self", "same_event", "counterparty", "downstream", "stranger"]
"""How a viewer stands to a participant that appears in what it reads, closest first:
- `self`: it is the viewer;
- `same_event`: the viewer took part in the event that names it (the other side of its own shipment or receipt);
- `counterparty`: they traded directly (one shipped to the other) at some point;
- `downstream`: the viewer holds or held material made from (or being) one of that participant's lots;
- `stranger`: none of these."""

_DISCLOSED_TO: dict[Disclosure, frozenset[str]] = {
    Disclosure.operator: frozenset({"self", "same_event"}),
    Disclosure.counterparties: frozenset({"self", "same_event", "counterparty"}),
    Disclosure.downstream: frozenset({"self", "same_event", "counterparty", "downstream"}),
    Disclosure.public: frozenset({"self", "same_event", "counterparty", "downstream", "stranger"}),
}


def identity_disclosed(kind: str | None, policy: str | None, relation: Relation) -> bool:
    """May a participant viewer learn the identity of a participant of kind `kind` with disclosure policy `policy`
    (`shared.vocab.Disclosure`; smelters and refiners are public) that stands in `relation` to it? The operator and
    regulators see every identity: callers do not ask for them."""
    return relation in _DISCLOSED_TO[effective_disclosure(kind, policy)]


def flag_parties(participants: Iterable[str], viewer: str | None) -> list[str]:
    """The parties of a flag as `viewer` (None: operator or officer) is shown them. Today everyone who may see the
    flag sees them all; the disclosure rules of a later issue go here."""
    del viewer
    return list(participants)


def named_in_flag(participant: str, participants: Iterable[str]) -> bool:
    """The first half of `flag_visible_sql`, for a flag in memory; the other half (a lot it holds or held, or made
    from the flag's lots) needs the holders and genealogy tables: `sees_flag`."""
    return participant in participants


def sees_flag(participant: str, participants: Iterable[str], lot_ids: Iterable[str], held: Iterable[str]) -> bool:
    """`flag_visible_sql` in Python: `held` are the flag's lots that `participant` holds or held, or from which a
    lot it holds or held was made."""
    return named_in_flag(participant, participants) or not set(lot_ids).isdisjoint(held)


def sees_custody_event(participant: str, actor: str | None) -> bool:
    """A custody event on the live stream: a participant sees the ones it did itself."""
    return actor == participant
