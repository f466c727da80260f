"""Audit use cases: flag queries, decisions on flags (acknowledge, respond, resolve, reopen), a lot's risk summary,
the live stream.

Each runs on the service's asyncpg pool (the projection's hot path shares its database), one transaction per use
case. A decision is recorded (`flag_decisions`) with its two events in the outbox, in one transaction: the decision
on `audit.decisions` (what a replay re-applies) and the flag as it now is on `audit.flags`; then the relay is woken
(every replica's `/stream` shows the flag from `audit.flags`: `audit.stream_feed`). Who may decide what is
`audit.domain.authorize`; who may see what is `shared.visibility`, applied in every use case.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from audit import domain, repository, rules, schemas
from audit.domain import Caller, DecisionKind, DecisionRefused, FlagOnLots, FlagStatus, NotYours, Standing
from audit.events import DECISION_EVENTS
from audit.repository import EVERYONE, FlagFilter, Viewer
from shared.auth import Principal, refuse_regulator
from shared.events import new_event
from shared.genealogy import TRUNCATED, truncated
from shared.outbox import outbox_committed
from shared.problems import Conflict, Forbidden, NotFound
from shared.visibility import (
    Party,
    named_in_flag,
    party_shown,
    sees_custody_event,
    strings_in,
    withhold_flag,
)

SOURCE = "/audit"


@dataclass(frozen=True, slots=True)
class Audit:
    """What the use cases run on: the pool, how deep genealogy walks go, and how many lots a risk summary walks at
    most (`GenealogySettings`)."""

    pool: asyncpg.Pool
    max_depth: int
    max_lots: int = 10_000


def _viewer(audit: Audit, who: Principal) -> Viewer:
    """Whose flags `who` sees: the operator and officers scoped to all, every flag; an officer scoped to some
    participants, theirs; a regulator, those on the lots its grant opens; a participant, those `shared.visibility`
    gives it."""
    if who.is_operator or (who.is_officer and who.scope is None):
        return EVERYONE
    if who.is_officer:
        return Viewer(scope=sorted(who.scope or ()), max_depth=audit.max_depth)
    if who.is_regulator:
        return Viewer(grant=(sorted(who.grant_lots), sorted(who.grant_participants)), max_depth=audit.max_depth)
    return Viewer(participant=who.subject, max_depth=audit.max_depth)


def _reader(who: Principal) -> str | None:
    """The participant whose disclosure rules apply to what `who` reads; None: it reads every identity (the
    operator, an officer, a regulator)."""
    return who.subject if who.is_participant else None


async def _parties(
    conn: asyncpg.Connection, audit: Audit, who: Principal, flags: Sequence[dict[str, Any]], more: Sequence[str] = ()
) -> dict[str, Party]:
    """One query for everything a page of flags (and `more` ids) needs to decide on identities, for a participant;
    nothing for anyone else."""
    reader = _reader(who)
    if reader is None:
        return {}
    ids: set[str] = set(more)
    for d in flags:
        ids.update(p for p in d["participants"] if p)
        ids.update(strings_in(d["evidence"]))
        ids.update(strings_in(d.get("evidence_history") or []))
    return await repository.parties(conn, reader, sorted(ids), audit.max_depth)


def _shown(d: dict[str, Any], who: Principal, parties: dict[str, Party]) -> dict[str, Any]:
    """A flag row as `who` is shown it: the parties and the participants its evidence names as disclosure allows
    (`shared.visibility.withhold_flag`), each withheld one in `withheld`."""
    reader = _reader(who)
    if reader is None:
        return withhold_flag(d, None, {})
    listed = set(d["participants"])
    known = {k: v for k, v in parties.items() if v.kind is not None or k in listed}
    return withhold_flag(d, reader, known)


def _flag(d: dict[str, Any], who: Principal, parties: dict[str, Party]) -> schemas.Flag:
    return schemas.Flag.model_validate(_shown(d, who, parties))


def _decision(d: dict[str, Any]) -> schemas.Decision:
    return schemas.Decision.model_validate(d)


def decision_seen(reader: str | None, kind: str, decided_by: str, decided_by_kind: str, parties_seen: set[str]) -> bool:
    """Is a decision on a flag shown to `reader` (None: the operator, an officer or a regulator, who see them all)?
    A participant sees its own acknowledgement (each holder's is its own business), the officers' decisions, and the
    responses of the parties whose identity it sees on the flag (`parties_seen`)."""
    if reader is None:
        return True
    return decided_by == reader or decided_by_kind == "officer" or (kind == "respond" and decided_by in parties_seen)


def _detail(
    r: asyncpg.Record, decisions: list[dict[str, Any]], who: Principal, parties: dict[str, Party]
) -> schemas.FlagDetail:
    """A flag with its decisions as `who` is shown them (`decision_seen`)."""
    shown = _shown(repository.flag_row(r), who, parties)
    reader = _reader(who)
    visible = {p for p in shown["participants"] if p}
    history = [
        d for d in map(_decision, decisions) if decision_seen(reader, d.kind, d.decided_by, d.decided_by_kind, visible)
    ]
    return schemas.FlagDetail.model_validate(
        {
            **shown,
            "acknowledgements": [
                schemas.Acknowledgement(participant_id=d.decided_by, acknowledged_at=d.decided_at, note=d.note)
                for d in history
                if d.kind == "acknowledge"
            ],
            "responses": [d for d in history if d.kind == "respond"],
            "history": history,
        }
    )


# --- flags ------------------------------------------------------------------------------------------------------


async def list_flags(
    *, audit: Audit, who: Principal, where: FlagFilter, before_seq: int | None, limit: int
) -> schemas.FlagPage:
    async with audit.pool.acquire() as conn:
        rows = await repository.list_flags(
            conn, where, viewer=_viewer(audit, who), before_seq=before_seq, limit=limit + 1
        )
        flags = [repository.flag_row(r) for r in rows[:limit]]
        parties = await _parties(conn, audit, who, flags)
    items = [_flag(d, who, parties) for d in flags]
    if where.participant is not None and _reader(who) is not None:
        # a party withheld from the reader is no filter it can probe with: only the parties it sees match (a page
        # may then be shorter than `limit`; `next_cursor` still goes on from the last flag read)
        items = [f for f in items if where.participant in f.participants]
    return schemas.FlagPage(items=items, next_cursor=str(rows[limit - 1]["seq"]) if len(rows) > limit else None)


async def count_flags(*, audit: Audit, who: Principal, where: FlagFilter) -> schemas.FlagCounts:
    """The flags `who` may see that `where` asks for, counted in the database (one statement): what `list_flags`
    would page through, in all, by severity and by rule."""
    if where.participant is not None and _reader(who) is not None and where.participant != who.subject:
        # a party withheld from the reader is no filter it can probe with (`list_flags` matches the parties it sees)
        raise Forbidden("A participant counts the flags that name itself only (`participant` is your own id).")
    async with audit.pool.acquire() as conn:
        rows = await repository.count_flags(conn, where, viewer=_viewer(audit, who))
    return tally((r["status"], r["severity"], r["rule"], r["n"]) for r in rows)


def tally(groups: Iterable[tuple[str, str, str, int]]) -> schemas.FlagCounts:
    """Counts by (status, severity, rule) added up: in all, by severity (every one, the highest first) and by rule
    (each that has a flag: the highest severity first, then the most open, then by name)."""

    def zero() -> dict[str, int]:
        return {"open": 0, "resolved": 0, "withdrawn": 0, "total": 0}

    total = zero()
    by_severity = {s: zero() for s in sorted(rules.Severity, key=rules.SEVERITY_ORDER.__getitem__, reverse=True)}
    by_rule: dict[str, dict[str, int]] = {}
    worst: dict[str, rules.Severity] = {}
    for status, severity, rule, n in groups:
        sev = rules.Severity(severity)
        for c in (total, by_severity[sev], by_rule.setdefault(rule, zero())):
            c[status] += n
            c["total"] += n
        if rule not in worst or rules.SEVERITY_ORDER[sev] > rules.SEVERITY_ORDER[worst[rule]]:
            worst[rule] = sev
    order = sorted(by_rule, key=lambda r: (-rules.SEVERITY_ORDER[worst[r]], -by_rule[r]["open"], r))
    return schemas.FlagCounts(
        **total,
        by_severity=[schemas.SeverityCounts(severity=s, **c) for s, c in by_severity.items()],
        by_rule=[schemas.RuleCounts(rule=rules.Rule(r), severity=worst[r], **by_rule[r]) for r in order],
    )


def _not_found(flag_id: str) -> NotFound:
    return NotFound(
        f"No flag {flag_id!r} that you may see (flags that name you, or that affect lots you hold, or held until "
        "after the event the flag is about)."
    )


async def get_flag(*, audit: Audit, who: Principal, flag_id: str) -> schemas.FlagDetail:
    async with audit.pool.acquire() as conn:
        row = await repository.get_flag(conn, flag_id, viewer=_viewer(audit, who))
        if row is None:
            raise _not_found(flag_id)
        decisions = await repository.decisions_of(conn, flag_id)
        parties = await _parties(conn, audit, who, [repository.flag_row(row)])
    return _detail(row, decisions, who, parties)


async def _standing(
    conn: asyncpg.Connection, audit: Audit, who: Principal, kind: DecisionKind, row: asyncpg.Record
) -> Standing:
    """What ties `who` to the flag, as far as `kind` needs to know (each part is a query)."""
    if who.is_participant and kind == DecisionKind.acknowledge:
        return Standing(holding=await repository.holding(conn, row["lot_ids"], who.subject, audit.max_depth))
    if who.is_participant:
        return Standing(named=named_in_flag(who.subject, row["participants"]))
    if who.is_officer and kind in (DecisionKind.resolve, DecisionKind.reopen) and who.scope is not None:
        return Standing(held_by=await repository.held_by(conn, row["lot_ids"]))
    return Standing()


async def decide(
    *,
    audit: Audit,
    who: Principal,
    flag_id: str,
    kind: DecisionKind,
    note: str | None,
    evidence: list[dict[str, Any]] | None = None,
) -> schemas.FlagDetail:
    """Take a decision on a flag under the decider's own identity (`audit.domain.authorize`: 403 for anyone it is
    not for); the decision and its events are written in one transaction."""
    refuse_regulator(who, f"{kind.value} a flag")  # before the flag is looked up: a regulator decides nothing
    # An officer finds any flag here, so that one outside its scope is told so (403), not "no such flag".
    viewer = EVERYONE if who.is_officer else _viewer(audit, who)
    async with audit.pool.acquire() as conn, conn.transaction():
        row = await repository.get_flag(conn, flag_id, viewer=viewer, for_update=True)
        if row is None:
            raise _not_found(flag_id)
        caller = Caller(who.subject, who.kind, who.scope)
        try:
            authority = domain.authorize(
                kind, caller, row["participants"], await _standing(conn, audit, who, kind, row)
            )
        except NotYours as exc:
            raise Forbidden(str(exc)) from exc
        mine = kind == DecisionKind.acknowledge and await repository.acknowledged(conn, flag_id, who.subject)
        try:
            to = domain.check_decision(flag_id, kind, row["status"], acknowledged_by_caller=mine)
        except DecisionRefused as exc:
            raise Conflict(str(exc)) from exc
        at = datetime.now(UTC)
        decision: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "flag_id": flag_id,
            "rule": row["rule"],
            "cause": row["cause"],
            "kind": kind.value,
            "decided_by": who.subject,
            "decided_by_kind": who.kind,
            "authority": authority,
            "decided_at": at,
            "note": note,
            "evidence": evidence or [],
        }
        await repository.insert_decisions(conn, [decision])
        if to == FlagStatus.resolved:
            row = await repository.set_status(conn, flag_id, status=to.value, by=who.subject, at=at, note=note)
        elif to == FlagStatus.open:
            row = await repository.set_status(conn, flag_id, status=to.value, by=None, at=None, note=None)
        suffix = DECISION_EVENTS[kind.value][0]
        shown = json.loads(_decision(decision).model_dump_json())
        flag_data = {
            **json.loads(schemas.Flag.model_validate(repository.flag_row(row)).model_dump_json()),
            "decision": shown,
        }
        recorded = {
            "decision_id": shown["id"],
            "flag_id": flag_id,
            "rule": row["rule"],
            "cause": row["cause"],
            **{k: v for k, v in shown.items() if k != "id"},
        }
        await repository.publish_decision(
            conn, [new_event(f"audit.decision.{suffix}", source=SOURCE, key=flag_id, data=recorded)]
        )
        await repository.publish(
            conn,
            [
                new_event(
                    f"audit.flag.{suffix}", source=SOURCE, key=row["lot_id"], subject=flag_id, data=flag_data, version=2
                )
            ],
        )
        decisions = await repository.decisions_of(conn, flag_id)
        parties = await _parties(conn, audit, who, [repository.flag_row(row)])
    outbox_committed()  # the flag as it now is reaches /stream from audit.flags, on every replica
    return _detail(row, decisions, who, parties)


# --- a lot's risk -----------------------------------------------------------------------------------------------


async def may_read_lot(conn: asyncpg.Connection, audit: Audit, who: Principal, lot_id: str) -> bool:
    """May `who` read this lot's risk and what is built from it (the filings' per-lot answers)? The operator and
    officers: any lot there is; a regulator: the lots its grant opens; a participant: the lots it holds or held and
    everything upstream of them, within the depth. False alike for a lot it may not read and for none at all."""
    if not await repository.lot_exists(conn, lot_id):
        return False
    if who.is_operator or who.is_officer:
        return True
    if who.is_regulator:
        return await repository.grant_opens_lot(
            conn, lot_id, sorted(who.grant_lots), sorted(who.grant_participants), audit.max_depth
        )
    return await repository.may_see_lot(conn, lot_id, who.subject, audit.max_depth)


async def lot_risk(*, audit: Audit, who: Principal, lot_id: str) -> schemas.RiskSummary:
    async with audit.pool.acquire() as conn:
        if not await may_read_lot(conn, audit, who, lot_id):
            raise NotFound(f"No lot {lot_id!r} that you may see.")
        depth, cut, lots_cut_at = await repository.upstream(conn, lot_id, audit.max_depth, audit.max_lots)
        # a participant's summary lists the flags it may see (a former holder: none raised after its hand-off)
        viewer = _viewer(audit, who) if who.is_participant else EVERYONE
        flag_rows = [repository.flag_row(r) for r in await repository.flags_on(conn, list(depth), viewer)]
        origins = await repository.origins(conn, list(depth))
        smelters = await repository.smelters(conn, list(depth))
        named = [o["origin_participant"] for o in origins if o["origin_participant"]] + [s["actor"] for s in smelters]
        parties = await _parties(conn, audit, who, flag_rows, named)
    flags = [_flag(d, who, parties) for d in flag_rows]  # each says whether it was resolved, by whom and when
    on_lots = [FlagOnLots(f.lot_ids, f.severity, f.status) for f in flags]
    reader = _reader(who)

    def shown(party: str | None) -> bool:
        """An origin's participant or a smelter as `who` may see it: a participant sees the identities its
        relation and their policies allow (`shared.visibility.identity_disclosed`); smelters and refiners are
        public."""
        if party is None or reader is None:
            return True
        return party_shown(reader, party, parties.get(party, Party()), same_event=False)

    own: list[schemas.Flag] = []
    inherited: list[schemas.Exposure] = []
    for f, facts in zip(flags, on_lots, strict=True):
        at = domain.exposure(lot_id, depth, facts)
        if at is None:
            own.append(f)
        else:
            inherited.append(schemas.Exposure(lot_id=at.lot_id, depth=at.depth, flag=f))
    return schemas.RiskSummary(
        lot_id=lot_id,
        rating=domain.rating(on_lots),  # type: ignore[arg-type]
        own_flags=own,
        inherited=inherited,
        origins=[
            schemas.Origin(
                lot_id=o["lot_id"],
                kind=o["origin_kind"],
                participant_id=o["origin_participant"] if shown(o["origin_participant"]) else None,
                country=o["origin_country"],
                region=o["origin_region"],
                mining_type=o["origin_mining_type"],
                irma_level_then=o["irma"],
                asm_certification_then=asm_certification_then(o["asm"]),
                withheld=[] if shown(o["origin_participant"]) else ["participant_id"],
            )
            for o in origins
        ],
        origin_countries=sorted({o["origin_country"] for o in origins if o["origin_country"]}),
        risk_factors=risk_factors(flags),
        smelters=[
            schemas.SmelterPassed(
                participant_id=s["actor"] if shown(s["actor"]) else None,
                kind=s["actor_kind"],
                transformation_id=s["transformation_id"],
                occurred_at=s["occurred_at"],
                rmap_status_then=s["rmap"],
                rmi_smelter_id=s["rmi_smelter_id"] if shown(s["actor"]) else None,
                withheld=[] if shown(s["actor"]) else ["participant_id", "rmi_smelter_id"],
            )
            for s in smelters
        ],
        upstream_lots=len(depth) - 1,
        truncated=TRUNCATED.validate_python(t)
        if (
            t := truncated(audit.max_depth, cut)
            if lots_cut_at is None
            else truncated(lots_cut_at, cut, reason="max_lots", limit=audit.max_lots)
        )
        else None,
    )


def asm_certification_then(held: Sequence[str]) -> str | None:
    """The ASM certification that counts (`rules.asm_certification`) among those in force on the day, each
    "scheme:value" (the latest recorded of its scheme)."""
    certs = [rules.Cert(h.partition(":")[0], h.partition(":")[2], date.min, None, i) for i, h in enumerate(held)]
    cert = rules.asm_certification(certs, date.min)
    return f"{cert.scheme}:{cert.value}" if cert is not None else None


def risk_factors(flags: Sequence[schemas.Flag]) -> list[schemas.OriginRiskFactor]:
    """The risk factors the `origin_risk_factors` flags among `flags` (the lot's and its upstream's, withdrawn ones
    left out) name, each once per origin lot, most serious first."""
    out: dict[tuple[str, str, str, str], schemas.OriginRiskFactor] = {}
    for f in flags:
        if f.rule != rules.Rule.origin_risk_factors:
            continue
        for x in f.evidence.get("factors", ()):
            rf = schemas.OriginRiskFactor(lot_id=f.lot_id, **{k: x[k] for k in _RISK_FACTOR_FIELDS})
            out.setdefault((rf.lot_id, rf.place, rf.factor, x.get("risk_profile") or rf.source), rf)
    order = {"high": 0, "medium": 1, "low": 2}
    return sorted(out.values(), key=lambda r: (order[r.level], r.lot_id, r.factor, r.place))


_RISK_FACTOR_FIELDS = ("place", "factor", "level", "effective_from", "effective_to", "source")


# --- the live stream (`audit.stream_feed`: what each listener may see of an item) -------------------------------------


async def as_seen(audit: Audit, who: Principal, item: dict[str, Any]) -> dict[str, Any] | None:
    """One item of the stream as `who` may see it (`shared.visibility`), or None: a participant's own custody
    events; the flags it may see (as `GET /flags` would list them: a former holder none raised after its hand-off),
    with the identities disclosure allows; an officer the flags in its scope; a regulator the flags on the lots its
    grant opens, whole (no custody events)."""
    if who.is_operator:
        return item["data"]
    data = item["data"]
    if item["event"] == "custody":
        return data if who.is_participant and sees_custody_event(who.subject, data.get("actor")) else None
    if item["event"] != "flag":
        return None
    lot_ids = list(data.get("lot_ids", ()))
    if who.is_officer:
        if who.scope is None or not who.scope.isdisjoint(data.get("participants", ())):
            return data
        async with audit.pool.acquire() as conn:
            return data if not who.scope.isdisjoint(await repository.held_by(conn, lot_ids)) else None
    async with audit.pool.acquire() as conn:  # the flag is committed before it is broadcast: ask the table
        if await repository.get_flag(conn, str(data.get("id")), viewer=_viewer(audit, who)) is None:
            return None
        if _reader(who) is None:
            return data
        flag = {**data, "participants": list(data.get("participants") or ()), "evidence": data.get("evidence") or {}}
        parties = await _parties(conn, audit, who, [flag])
    shown = _shown(flag, who, parties)
    if "decision" in shown:  # a decision on it: its decider as the flag's history would show it
        d = shown["decision"]
        visible = {p for p in shown["participants"] if p}
        if not (
            d.get("decided_by") == who.subject
            or d.get("decided_by_kind") == "officer"
            or (d.get("kind") == "respond" and d.get("decided_by") in visible)
        ):
            shown = {k: v for k, v in shown.items() if k != "decision"}
    return shown
