"""Who may see a lot or a flag: the one place that says it, for every service that answers such a question
(custody's lots, histories and traces; audit's flags, risk summaries and live stream). Each service runs it on its
own `genealogy(parent, child, ...)` and `lot_holders(lot_id, participant_id)` tables.

- The operator sees everything.
- A participant sees a lot it holds or held, and every lot upstream of one (what its material was made from):
  a lot from which a lot it holds or held was made, at most `max_depth` transformations down. The depth is one
  setting, `TRACE_MAX_DEPTH` (`GenealogySettings`), for traces and visibility alike.
- A participant sees a flag that names it (it is one of the parties the finding is about) or that affects a lot it
  holds now: the flag's own lots and every lot made from them (at most `max_depth` transformations down), so a
  downstream holder sees what its material inherits; a lot it held and let go of (its buyer received it) counts
  only for flags on events up to that hand-off (`flag_visible_sql`). Of a flag it sees, it sees the rule, severity,
  summary, status and lots, and the identities of the parties and of the participants the evidence names only where
  `identity_disclosed` allows (`flag_parties`, `withhold_flag`). (Compliance officers see their flags whole.)
- On the live stream a participant sees the custody events it did itself, and the flags it may see.
- A regulator sees, in full, the lots its grant opens: each granted lot, each lot a granted participant holds or held,
  and every lot upstream of those (`grant_lots_sql`), and the flags on them.

What a participant sees is decided here and nowhere else; the SQL fragments and the Python predicates below say the
same thing, and `tests/shared/test_visibility.py` holds them to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

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
    lot upstream of them, at most `depth_limit` steps (lot_visible_sql's walk, started from all of its lots).
    Which of their flags it sees is `flag_visible_sql` (`flag_reach_sql`: up to each lot's cutoff)."""
    seed = f"SELECT lot_id, 0 FROM lot_holders WHERE participant_id = {participant}"
    return walk_sql(upstream=True, depth_limit=depth_limit, seed=seed) + "SELECT lot_id FROM reached"


def flag_reach_sql(participant: str, depth_limit: str) -> str:
    """A query: every lot whose flags may reach `participant` (a parameter such as `$2`), each with the moment up to
    which they do (`cutoff`): each lot it holds or held, up to its hand-off (`lot_holders.until`; holding it now:
    `infinity`), and every lot upstream of those (at most `depth_limit` steps), up to the transformation that drew it
    into that material (`transformations.recorded_at`) or that hand-off, whichever came first. Reached more than one
    way, the latest counts. (Audit's tables: `lot_holders.until`, `transformations`.)"""
    return f"""
WITH RECURSIVE reach(id, lot, depth, cutoff) AS (
  SELECT lot_id, true, 0, coalesce(until, 'infinity'::timestamptz) FROM lot_holders WHERE participant_id = {participant}
  UNION
  SELECT s.id, s.lot, s.depth, s.cutoff FROM reach CROSS JOIN LATERAL (
    SELECT o.transformation_id AS id, false AS lot, reach.depth, least(reach.cutoff, t.recorded_at) AS cutoff
    FROM transformation_outputs o LEFT JOIN transformations t USING (transformation_id)
    WHERE reach.lot AND reach.depth < {depth_limit} AND o.lot_id = reach.id
    UNION ALL
    SELECT i.lot_id, true, reach.depth + 1, reach.cutoff FROM transformation_inputs i
    WHERE NOT reach.lot AND i.transformation_id = reach.id
  ) s
)
SELECT id AS lot_id, max(cutoff) AS cutoff FROM reach WHERE lot GROUP BY id"""


def flag_reach_cte(participant: str, depth_limit: str, name: str = "flag_reach") -> str:
    """A common table expression `name(map)`: `flag_reach_sql` as one JSON object, lot id -> cutoff, for
    `flag_visible_sql(..., reach=name)`: a query starting `WITH {flag_reach_cte(...)} SELECT ...` walks once and
    is costed once (a per-row subquery holding the walk would be costed per row, which wakes the JIT compiler)."""
    walk = flag_reach_sql(participant, depth_limit)
    return f"{name} AS MATERIALIZED (SELECT coalesce(jsonb_object_agg(lot_id, cutoff), '{{}}') AS map FROM ({walk}) r)"


def flag_visible_sql(
    participant: str, depth_limit: str = "100", event_at: str = "NULL", reach: str | None = None
) -> str:
    """A condition on a `flags` row (columns `participants` and `lot_ids`): may `participant` (a parameter such as
    `$2`) see it? Named in it (an event it took part in); or on a lot of `flag_reach_sql` (a lot it holds or held, or
    one upstream of such a lot, `depth_limit` steps) when the event the flag is about (`event_at`, an SQL expression
    on the row: when that event was recorded; NULL: unknown, as early as can be) came no later than that lot's
    cutoff: a flag on a lot it let go of, raised on an event after its hand-off, is not its; nor is a flag on an
    upstream lot raised on an event after that lot was drawn into its material (the risk does not flow into it).

    `reach`: the name of a `flag_reach_cte` of the query (for the same participant); without it the walk is a
    subquery of the condition (one walk all the same). Each flag looks its lots up in the walk's map."""
    if reach is None:
        walk = flag_reach_sql(participant, depth_limit)
        src = (
            f"(SELECT (SELECT coalesce(jsonb_object_agg(lot_id, cutoff), '{{}}') FROM ({walk}) r) AS map) AS flag_reach"
        )
        reach = "flag_reach"
    else:
        src = reach
    return (
        f"({participant} = ANY(participants) OR EXISTS (SELECT 1 FROM {src}, unnest(lot_ids) AS fl(lot) "
        f"WHERE {reach}.map ? fl.lot "
        f"AND ({reach}.map ->> fl.lot)::timestamptz >= coalesce({event_at}, '-infinity'::timestamptz)))"
    )


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


def relation_to(
    viewer: str, party: str, *, same_event: bool, counterparty: bool = False, downstream: bool = False
) -> Relation:
    """How `viewer` stands to `party` (`Relation`), from what the caller found: whether the viewer took part in the
    event that names `party` (`same_event`), traded with it directly (`counterparty`), holds or held material from
    its lots (`downstream`)."""
    if party == viewer:
        return "self"
    if same_event:
        return "same_event"
    if counterparty:
        return "counterparty"
    return "downstream" if downstream else "stranger"


@dataclass(frozen=True, slots=True)
class Party:
    """What deciding on a participant's identity needs: its kind and policy (None: unknown, the default), and how it
    stands to the viewer beyond the event itself."""

    kind: str | None = None
    policy: str | None = None
    counterparty: bool = False
    downstream: bool = False


WITHHELD_TEXT = "(a participant)"
"""What a withheld participant's id becomes inside a text that names it (a flag's summary, an evidence's detail)."""


def flag_parties(
    participants: Iterable[str], viewer: str | None, parties: Mapping[str, Party] | None = None
) -> list[str | None]:
    """The parties of a flag as `viewer` is shown them: None (the operator, an officer, a regulator) sees them all;
    a participant sees each party whose identity `identity_disclosed` gives it (`parties`: what is known of each; a
    party of the flag is `same_event` to a viewer the flag also names), the others as None."""
    listed = list(participants)
    if viewer is None:
        return list(listed)
    known = parties or {}
    named = viewer in listed
    return [p if party_shown(viewer, p, known.get(p, Party()), same_event=named) else None for p in listed]


def party_shown(viewer: str, party: str, p: Party, *, same_event: bool) -> bool:
    """May `viewer` learn the identity of `party` (`p`: what is known of it)? `identity_disclosed` on `relation_to`."""
    rel = relation_to(viewer, party, same_event=same_event, counterparty=p.counterparty, downstream=p.downstream)
    return identity_disclosed(p.kind, p.policy, rel)


def withhold_flag(flag: Mapping[str, Any], viewer: str | None, parties: Mapping[str, Party]) -> dict[str, Any]:
    """A flag (a dict with `participants`, `summary`, `evidence`) as `viewer` is shown it: its parties
    (`flag_parties`) and the participants its evidence names (any string in it that is a known participant's id:
    `parties`, whose relation to the viewer is never `same_event` unless it is a party of the flag too) as null
    where their identity is withheld, each such field's name (`participants[1]`, `evidence.sender`) in `withheld`;
    inside a text (the summary, an evidence's words) a withheld id reads `WITHHELD_TEXT`. Rule, severity, lots,
    status and the rest are never withheld (the cause and the evidence history are redacted the same way). None
    (operator, officer, regulator): the flag whole, `withheld` empty."""
    out = dict(flag)
    if viewer is None:
        out["withheld"] = []
        return out
    listed = list(flag.get("participants") or ())
    shown_parties = flag_parties(listed, viewer, parties)
    withheld = [f"participants[{i}]" for i, p in enumerate(shown_parties) if p is None]
    hidden = {p for p, shown in zip(listed, shown_parties, strict=True) if shown is None} | {
        p for p, known in parties.items() if p not in listed and not party_shown(viewer, p, known, same_event=False)
    }
    out["participants"] = shown_parties
    if hidden:
        out["evidence"] = _redact(flag.get("evidence"), hidden, "evidence", withheld)
        for text in ("summary", "cause"):  # a cause may name a mine (`<mine>:irma:<lot>`)
            if isinstance(flag.get(text), str):
                out[text] = _redact_text(flag[text], hidden)
        if flag.get("evidence_history"):  # what re-judgements replaced: the same rules
            out["evidence_history"] = _redact(flag["evidence_history"], hidden, "evidence_history", withheld)
    out["withheld"] = withheld
    return out


def _redact_text(text: str, hidden: set[str]) -> str:
    for p in sorted(hidden, key=len, reverse=True):
        if p and p in text:
            text = text.replace(p, WITHHELD_TEXT)
    return text


def _redact(v: Any, hidden: set[str], path: str, withheld: list[str]) -> Any:
    if isinstance(v, str):
        if v in hidden:
            withheld.append(path)
            return None
        return _redact_text(v, hidden)
    if isinstance(v, Mapping):
        return {k: _redact(x, hidden, f"{path}.{k}", withheld) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_redact(x, hidden, f"{path}[{i}]", withheld) for i, x in enumerate(v)]
    return v


def strings_in(v: Any) -> set[str]:
    """Every string in a JSON value (the ids an evidence may name, to be looked up as participants)."""
    if isinstance(v, str):
        return {v}
    if isinstance(v, Mapping):
        return set().union(*(strings_in(x) for x in v.values())) if v else set()
    if isinstance(v, list | tuple):
        return set().union(*(strings_in(x) for x in v)) if v else set()
    return set()


def named_in_flag(participant: str, participants: Iterable[str]) -> bool:
    """The first half of `flag_visible_sql`, for a flag in memory; the other half (a lot it holds or held, or made
    from the flag's lots) needs the holders and genealogy tables: `sees_flag`."""
    return participant in participants


def sees_flag(participant: str, participants: Iterable[str], lot_ids: Iterable[str], held: Iterable[str]) -> bool:
    """`flag_visible_sql` in Python: `held` are the flag's lots that `participant` holds now, or held and let go of
    no earlier than the event the flag is about, or from which such a lot was made."""
    return named_in_flag(participant, participants) or not set(lot_ids).isdisjoint(held)


def sees_custody_event(participant: str, actor: str | None) -> bool:
    """A custody event on the live stream: a participant sees the ones it did itself."""
    return actor == participant
