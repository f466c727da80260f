"""Artisanal and industrial mining side by side (IRMA Standard chapter 3.6; ARM's principles of coexistence): the
registry's records of ASM groups on or next to an industrial titleholder's title and of coexistence agreements, and
the judgement of the titleholder's origin lots with them (`rules.coexistence_findings`).

The judgement reads what is known now, not what was known at each moment since the lot (no horizons): an agreement
recorded later whose period covers a lot's production day settles that lot's finding, which is then `Cleared` by the
agreement (withdrawn unless a person decided on it), as a replay, judging with the agreement known, never raises it.
An agreement suspended or a presence recorded later raises (or re-opens) the finding the same way. Every change of a
presence or an agreement re-judges the titleholder's origin lots (`rejudge`), so live and replay end alike.
"""

from __future__ import annotations

from audit import rules
from audit.projection import screening, statements
from audit.projection.context import About, Context
from audit.projection.decode import AgreementChanged, AsmPresenceChanged
from audit.projection.flags import Why
from audit.rules import Rule


def coexistence_keys(titleholder: str, lot_id: str) -> list[screening.Key]:
    """The flag judging a lot's coexistence can raise."""
    return [(Rule.coexistence_without_agreement, f"{titleholder}:coexistence:{lot_id}")]


def judge_lot(ctx: Context, lot_id: str, rejudge: screening.Rejudge = False) -> None:
    """An industrial titleholder's origin lot against the ASM known on or next to its title and the agreements in
    force on its production day. Cheap for every other lot (a few dict lookups): nothing to judge."""
    s = ctx.state
    lot = s.mine_lots.get(lot_id)
    if lot is None or lot.mining_type != "lsm":
        return
    titleholder = lot.mine
    presence_ids = s.asm_presence_by_titleholder.get(titleholder, ())
    if not presence_ids and lot.produced_by is None and not rejudge:
        return
    presences = [s.asm_presence[i][1] for i in presence_ids]
    agreements = [s.agreements[i][1] for i in s.agreements_by_titleholder.get(titleholder, ())]
    ctx.judge(
        "coexistence_without_agreement",
        About(lot_id, lot.event_id, "custody.lot.registered", titleholder),
        lambda: screening.rejudged(
            ctx,
            rules.coexistence_findings(
                lot_id=lot_id,
                event_id=lot.event_id,
                titleholder=titleholder,
                mining_type=lot.mining_type,
                produced_by=lot.produced_by,
                on=lot.origin_at.date(),
                presences=presences,
                agreements=agreements,
            ),
            rejudge,
            coexistence_keys(titleholder, lot_id),
            lot_id,
        ),
    )


def presence_fact(ev: AsmPresenceChanged) -> Why:
    p = ev.presence
    until = p.until.isoformat() if p.until else None
    return Why(
        {
            "asm_presence": p.id,
            "titleholder": p.titleholder,
            "asm_group": p.asm_group,
            "relation": p.relation,
            "since": p.since.isoformat(),
            "until": until,
            "version": ev.version,
            "known_at": ev.known_at.isoformat(),
        },
        f"ASM group {p.asm_group} {p.relation} of {p.titleholder} since {p.since}"
        + (f" until {until}" if until else ""),
    )


def agreement_fact(ev: AgreementChanged) -> Why:
    a = ev.agreement
    until = a.valid_until.isoformat() if a.valid_until else None
    return Why(
        {
            "coexistence_agreement": a.id,
            "titleholder": a.titleholder,
            "asm_groups": list(a.asm_groups),
            "status": a.status,
            "valid_from": a.valid_from.isoformat(),
            "valid_until": until,
            "version": ev.version,
            "known_at": ev.known_at.isoformat(),
        },
        f"coexistence agreement {a.id} of {a.titleholder} ({a.status}), valid from {a.valid_from}"
        + (f" to {until}" if until else ""),
    )


def _rejudge_titleholder(ctx: Context, titleholder: str, why: Why) -> None:
    for lot_id in ctx.state.lots_by_mine.get(titleholder, ()):
        judge_lot(ctx, lot_id, rejudge=why)


def on_presence(ctx: Context, ev: AsmPresenceChanged) -> None:
    s, j = ctx.state, ctx.journal
    p = ev.presence
    known = s.asm_presence.get(p.id)
    if known is not None and known[0] > ev.version:
        return  # an older version than what is known: the table keeps the newer one
    if known is None:
        if p.titleholder not in s.asm_presence_by_titleholder:
            j.set(s.asm_presence_by_titleholder, p.titleholder, [])
        j.append(s.asm_presence_by_titleholder[p.titleholder], p.id)
    j.set(s.asm_presence, p.id, (ev.version, p))
    row = (p.id, p.titleholder, p.asm_group, p.relation, p.since, p.until, p.source, ev.version, ev.known_at)
    j.set(ctx.changes.asm_presence, p.id, row)
    _rejudge_titleholder(ctx, p.titleholder, presence_fact(ev))


def on_agreement(ctx: Context, ev: AgreementChanged) -> None:
    s, j = ctx.state, ctx.journal
    a = ev.agreement
    known = s.agreements.get(a.id)
    if known is not None and known[0] > ev.version:
        return
    if known is None:
        if a.titleholder not in s.agreements_by_titleholder:
            j.set(s.agreements_by_titleholder, a.titleholder, [])
        j.append(s.agreements_by_titleholder[a.titleholder], a.id)
    j.set(s.agreements, a.id, (ev.version, a))
    groups = statements.to_json(list(a.asm_groups))
    row = (
        a.id,
        a.titleholder,
        groups,
        a.status,
        a.signed,
        a.valid_from,
        a.valid_until,
        a.reference,
        ev.version,
        ev.known_at,
    )
    j.set(ctx.changes.agreements, a.id, row)
    _rejudge_titleholder(ctx, a.titleholder, agreement_fact(ev))
