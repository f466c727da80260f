"""The filings' use cases: who may ask for whose filing, the period and products asked about, the roots (the filer's
consumptions, or the lots it received), the genealogy above them within bounds, and the builder (`audit.cmrt`). Read
only: one read-only transaction with a statement timeout, so that a filing too large to build in time is a 503, never
a connection held for minutes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, TypeAlias

import asyncpg
import orjson

from audit import battery_passport, cmrt, shares
from audit import filings_repository as repository
from audit import repository as audit_repository
from audit import service as audit_service
from audit.filings_domain import Graph, LotFacts
from shared.auth import Principal
from shared.problems import Forbidden, InvalidInput, NotFound, ServiceUnavailable
from shared.visibility import Party, party_shown
from shared.vocab import BATTERY_MATERIALS, CMRT_METALS, EMRT_MINERALS, Mineral

Pool: TypeAlias = asyncpg.Pool  # what the router hands over (it imports no driver itself)

MAX_PERIOD_DAYS = 400
MAX_PRODUCTS = 50
MAX_ROOTS = 20_000  # consumptions (or receipts) in one filing: more -> 422, narrow the period
MAX_DEPTH = 100  # transformations walked up from each root (as a risk summary: TRACE_MAX_DEPTH)
MAX_LOTS = 100_000  # lots in the genealogy (whole depths: `shared.genealogy.walk_sql`)
TIMEOUT_MS = 30_000  # the filing's statements together
# The minerals we carry beyond the EMRT's (its `other minerals` option): ours -> the label the export uses.
OTHER_MINERALS: dict[str, str] = {
    m.value: m.value.replace("_", " ").capitalize() for m in Mineral if m not in CMRT_METALS and m not in EMRT_MINERALS
}


@dataclass(frozen=True, slots=True)
class Ask:
    """What a filing is asked for (the router's parameters, parsed)."""

    template: str  # cmrt | emrt
    start: date
    end: date  # exclusive
    products: tuple[str, ...] = ()
    basis: str = "consumed"  # consumed | received
    participant: str | None = None  # the operator, a regulator: whose filing
    other_minerals: bool = False  # EMRT: also the minerals we carry beyond its list


@dataclass(slots=True)
class Built:
    filing: cmrt.Filing
    filer: str
    filer_name: str | None
    ask: Ask
    products: dict[str, dict[str, Any]]  # the products asked about (id -> name, gtin)
    generated_at: datetime


def _filer(who: Principal, participant: str | None) -> tuple[str, str | None]:
    """(whose filing, the viewer the names and flags are shown to: None for the operator and regulators)."""
    if who.is_participant:
        if participant is not None and participant != who.subject:
            raise Forbidden("a participant files for itself only")
        return who.subject, who.subject
    if who.is_operator or who.is_regulator:
        if participant is None:
            raise InvalidInput("query.participant", "`participant` is required for the operator and regulators")
        if who.is_regulator and participant not in who.grant_participants:
            raise Forbidden("the grant does not open this participant")
        return participant, None
    raise Forbidden("only participants (for themselves), the operator and regulators read filings")


def _check(ask: Ask) -> None:
    if ask.end <= ask.start:
        raise InvalidInput("query.to", "`to` must be after `from`")
    if (ask.end - ask.start).days > MAX_PERIOD_DAYS:
        raise InvalidInput("query.to", f"the period is at most {MAX_PERIOD_DAYS} days")
    if len(ask.products) > MAX_PRODUCTS:
        raise InvalidInput("query.product", f"at most {MAX_PRODUCTS} products")
    if ask.basis == "received" and ask.products:
        raise InvalidInput("query.product", "products are chosen among consumptions: not with basis=received")


def minerals_of(ask: Ask) -> dict[str, str]:
    if ask.template == "cmrt":
        return dict(CMRT_METALS)
    return {**EMRT_MINERALS, **(OTHER_MINERALS if ask.other_minerals else {})}


def _at(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


async def build(pool: asyncpg.Pool, who: Principal, ask: Ask) -> Built:
    filer, viewer = _filer(who, ask.participant)
    _check(ask)
    try:
        return await _build(pool, filer, viewer, ask)
    except asyncpg.QueryCanceledError as e:  # the statement timeout: nothing is held, nothing was written
        raise ServiceUnavailable(
            f"the filing took longer than {TIMEOUT_MS // 1000} s to build: narrow the period or choose products"
        ) from e


async def _build(pool: asyncpg.Pool, filer: str, viewer: str | None, ask: Ask) -> Built:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {TIMEOUT_MS}")
        party = await repository.participant(conn, filer)
        if party is None:
            raise NotFound(f"no participant {filer}")
        products: dict[str, dict[str, Any]] = {}
        if ask.products:
            products = await repository.products_of(conn, filer, ask.products)
            missing = sorted(set(ask.products) - set(products))
            if missing:
                raise NotFound(f"no product {missing[0]}")
        roots = await repository.roots(
            conn, filer, _at(ask.start), _at(ask.end), ask.products, basis=ask.basis, limit=MAX_ROOTS
        )
        if len(roots) > MAX_ROOTS:
            raise InvalidInput(
                "query.from",
                f"more than {MAX_ROOTS} {'receipts' if ask.basis == 'received' else 'consumptions'} in the period: "
                "narrow the period or choose products",
            )
        lots = list(dict.fromkeys(r.lot_id for r in roots))
        graph = await repository.upstream_graph(conn, lots, max_depth=MAX_DEPTH, max_lots=MAX_LOTS) if lots else Graph()
        flags = await repository.flags_on(conn, list(graph.lots), viewer, MAX_DEPTH) if graph.lots else {}
        assessment = await repository.latest_assessment(conn, filer)
        if assessment is not None:  # evidence in the filing's JSON, CSV and workbook: the time as text
            assessment["submitted_at"] = assessment["submitted_at"].isoformat()
        covered = cmrt.COVERED_COUNTRIES
        if ask.template == "emrt":
            covered = frozenset(await repository.cahra_countries(conn, datetime.now(UTC).date()))
    filing = cmrt.build(
        graph,
        [cmrt.RootUse(r.lot_id, r.kg, r.product_id) for r in roots],
        template=ask.template,
        minerals=minerals_of(ask),
        viewer=viewer,
        flags=flags,
        assessment=assessment,
        covered=covered,
    )
    return Built(filing, filer, party["name"], ask, products, datetime.now(UTC))


def assessment_json(v: Any) -> Any:
    return orjson.loads(v) if isinstance(v, str) else v


# --- part R: a lot's responsibly-produced share and its battery passport's due diligence -------------------------
# Who may ask is who may read the lot's risk summary (`audit.service.lot_risk`: the holder and everyone downstream
# within the depth, the operator, officers, a regulator whose grant opens it); anyone else gets the same 404 as for a
# lot that does not exist. Identities follow `shared.visibility.party_shown` for a participant asker.

LotAudit: TypeAlias = audit_service.Audit  # the pool and the genealogy bounds (the router builds it)


async def _shown(conn: asyncpg.Connection, audit: LotAudit, who: Principal, graph: Graph) -> Callable[[str], bool]:
    """May `who` learn each participant's identity the graph names (origins' participants, transformers)? The
    operator, officers and regulators: every one."""
    if not who.is_participant:
        return lambda _: True
    reader = who.subject
    ids = {f.origin_participant for f in graph.lots.values() if f.origin_participant} | {
        s.actor for s in graph.made_by.values()
    }
    parties = await audit_repository.parties(conn, reader, sorted(ids), audit.max_depth)
    return lambda p: party_shown(reader, p, parties.get(p, Party()), same_event=False)


async def _lot_graph(conn: asyncpg.Connection, audit: LotAudit, lot_id: str) -> tuple[Graph, LotFacts]:
    graph = await repository.upstream_graph(conn, [lot_id], max_depth=audit.max_depth, max_lots=audit.max_lots)
    facts = graph.lots.get(lot_id)
    if facts is None:  # projected between the check and the walk: never in one read-only transaction
        raise NotFound(f"No lot {lot_id!r} that you may see.")
    return graph, facts


async def responsible_share(*, audit: LotAudit, who: Principal, lot_id: str) -> shares.ResponsibleShareOut:
    async with audit.pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {TIMEOUT_MS}")
        if not await audit_service.may_read_lot(conn, audit, who, lot_id):
            raise NotFound(f"No lot {lot_id!r} that you may see.")
        graph, facts = await _lot_graph(conn, audit, lot_id)
        shown = await _shown(conn, audit, who, graph)
    return shares.as_out(shares.responsible_share(graph, lot_id, facts.mass_kg, shown=shown))


async def battery_due_diligence(
    *, audit: LotAudit, who: Principal, lot_id: str, materials: frozenset[str] = BATTERY_MATERIALS
) -> battery_passport.BatteryDueDiligenceOut:
    # the lot's risk summary: whether `who` may read it (the same 404), and the flags upstream it may see, each with
    # the identities it may see
    risk = await audit_service.lot_risk(audit=audit, who=who, lot_id=lot_id)
    flags = [*risk.own_flags, *(e.flag for e in risk.inherited)]
    reader = who.subject if who.is_participant else None
    async with audit.pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {TIMEOUT_MS}")
        graph, facts = await _lot_graph(conn, audit, lot_id)
        shown = await _shown(conn, audit, who, graph)
        decisions = await repository.decisions_on(conn, [f.id for f in flags])
        policy = await repository.latest_assessment(conn, reader) if reader is not None else None

    def seen(f: Any, d: asyncpg.Record) -> bool:
        """A decision as `audit.service.get_flag` shows it (`audit.service.decision_seen`)."""
        visible = {p for p in f.participants if p}
        return audit_service.decision_seen(reader, d["kind"], d["decided_by"], d["decided_by_kind"], visible)

    risks = [
        battery_passport.Risk(
            f.id,
            f.rule,
            f.severity,
            f.status,
            f.summary,
            f.raised_at,
            tuple(f.lot_ids),
            tuple(
                battery_passport.RiskDecision(
                    d["kind"], d["decided_at"], d["decided_by"], d["decided_by_kind"], d["note"]
                )
                for d in decisions.get(f.id, [])
                if seen(f, d)
            ),
        )
        for f in flags
    ]
    return battery_passport.due_diligence(
        graph,
        lot_id,
        facts.mineral,
        facts.mass_kg,
        risks=risks,
        policy=battery_passport.Policy(
            policy["assessment_id"], policy["submitted_at"], policy["questionnaire_version"], policy["total"]
        )
        if policy is not None
        else None,
        shown=shown,
        materials=materials,
    )
