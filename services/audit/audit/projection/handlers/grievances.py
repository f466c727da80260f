"""Substantiated grievances (`audit.grievance.triaged` on `audit.decisions`, the operator's triage): every lot from
the participant or site it is about, dated in its period, gets a `substantiated_grievance` flag: those known when the
triage arrives, and those that arrive afterwards (`on_new_lot`, called for every new lot). Live, a triage may come
before or after the lots it bears on; a replay reads it after all of them: either way each lot is judged once with
the same grievance, so the flags are the same.

A lot is "from" a participant when it came into being there: its origin participant (`lots.origin_participant`) is
the participant (a mine's origin lot, the output of a transformation it recorded, material declared as from it), and
its origin date (`origin_at`) falls in the period. What is made from such a lot inherits the flag through its risk
summary, like any origin finding."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, cast

from audit import rules
from audit.projection.context import About, Context
from audit.projection.decode import NewLot, intern
from audit.projection.state import OriginLots
from audit.rules import Grievance

NEW_LOT_EVENTS = {
    "mine": "custody.lot.registered",
    "external": "custody.lot.external_declared",
    "transformation": "custody.lot.transformed",
    "recycled": "custody.lot.recycled",
}


def _judge(
    ctx: Context, g: Grievance, lot_id: str, kind: str, at_participant: str, origin_at: datetime, about: About
) -> None:
    ctx.judge(
        "substantiated_grievance",
        about,
        lambda: rules.substantiated_grievance(
            grievance=g,
            lot_id=lot_id,
            origin_kind=kind,
            origin_participant=at_participant,
            origin_at=origin_at,
        ),
    )


def on_triaged(ctx: Context, g: Grievance) -> None:
    """A substantiated grievance: kept (for lots that arrive later) and judged on every lot known from there."""
    s, j = ctx.state, ctx.journal
    known = s.grievances.get(g.participant_id)
    if known is None:
        j.set(s.grievances, g.participant_id, [])
        known = s.grievances[g.participant_id]
    if all(k.id != g.id for k in known):  # else known already (loaded from the table, or redelivered): judged again
        j.append(known, g)
    lots: list[tuple[datetime, str, str]] = []
    for lot_id in s.lots_by_mine.get(g.participant_id, ()):  # a mine's origin lots
        mined = s.mine_lots.get(lot_id)
        if mined is not None:
            lots.append((mined.origin_at, lot_id, "mine"))
    index = s.lots_by_origin.get(g.participant_id)  # the others it is the origin of, by UTC day
    if index is not None:
        for day, lot_id, kind in zip(index.days, index.lots, index.kinds, strict=True):
            lots.append((datetime.combine(date.fromordinal(day), time(), UTC), lot_id, kind))
    for origin_at, lot_id, kind in lots:
        if g.period_from <= origin_at.date() <= g.period_to:
            about = About(lot_id, g.id, "audit.grievance.triaged", None)
            _judge(ctx, g, lot_id, kind, g.participant_id, origin_at, about)


def on_new_lot(ctx: Context, lot: NewLot) -> None:
    """A new lot with an origin participant: indexed (unless a mine's: `lots.new_lot` indexes those), and judged
    against that participant's substantiated grievances (a dict lookup when there are none). On every new lot: kept
    short."""
    who = lot.origin_participant
    if who is None:
        return
    s = ctx.state
    if lot.origin_kind != "mine":  # a mine's origin lots are indexed already (`State.lots_by_mine`, `mine_lots`)
        j = ctx.journal
        index = s.lots_by_origin.get(who)
        if index is None:
            index = OriginLots()
            j.set(s.lots_by_origin, intern(who), index)
        j.append(cast(Any, index.days), lot.at.astimezone(UTC).date().toordinal())
        j.append(index.lots, lot.lot_id)
        j.append(index.kinds, lot.origin_kind)  # the kinds are the decoder's literals: one copy each
    found = s.grievances.get(who)
    if found:
        kind = lot.origin_kind
        about = About(lot.lot_id, lot.event_id, NEW_LOT_EVENTS.get(kind, "custody.lot.registered"), lot.custodian)
        for g in found:
            _judge(ctx, g, lot.lot_id, kind, who, lot.at, about)
