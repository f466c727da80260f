"""Lots coming into being (registered at a mine, declared from outside), and the check of a lot's event times."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from audit import rules
from audit.projection import risk_profiles, screening, statements
from audit.projection.context import About, Context
from audit.projection.decode import (
    Consumed,
    ExternalDeclared,
    LotRegistered,
    NewLot,
    OriginAnswered,
    ProductChanged,
    intern,
    intern_opt,
)
from audit.projection.handlers import coexistence, grievances
from audit.projection.state import Bag, DeclaredLot, MineLot, OriginAnswer
from audit.rules import Finding


def new_lot(ctx: Context, lot: NewLot) -> bool:
    """The lot and its first holder; returns whether the lot is new (an existing lot id is left as it is)."""
    s, j, c = ctx.state, ctx.journal, ctx.changes
    if (lot.lot_id, lot.custodian) not in c.hand_overs:  # handed over in this batch already: written there
        j.set(c.holders, (lot.lot_id, lot.custodian), None)
    if lot.lot_id in s.lots:
        return False
    j.set(s.lots, lot.lot_id, lot.at)
    j.set(c.lots, lot.lot_id, lot)  # the record is the row
    grievances.on_new_lot(ctx, lot)  # indexed by origin participant; judged against its substantiated grievances
    if lot.origin_kind == "mine":
        assert lot.origin_participant is not None  # the decoder checks it
        mine = MineLot(
            lot.lot_id,
            lot.event_id,
            intern(lot.origin_participant),
            intern_opt(lot.origin_country),
            intern_opt(lot.origin_region),
            intern_opt(lot.origin_mining_type),
            lot.at,
            lot.recorded_at,
            intern_opt(lot.produced_by),
        )
        j.set(s.mine_lots, lot.lot_id, mine)
        if mine.produced_by is not None:  # re-screened when the ASM group's certifications change (H5)
            if mine.produced_by not in s.lots_by_producer:
                j.set(s.lots_by_producer, mine.produced_by, [])
            j.append(s.lots_by_producer[mine.produced_by], lot.lot_id)
        for index, key in ((s.lots_by_mine, mine.mine), (s.lots_by_country, mine.country or "")):
            if key not in index:
                j.set(index, key, [])
            j.append(index[key], lot.lot_id)
        produced = (lot.at, lot.recorded_at, lot.lot_id, lot.mass_kg)
        for year in rules.production_years(lot.at, lot.recorded_at, ctx.thresholds):  # backdating leaves no year
            pkey = (mine.mine, intern(lot.mineral), year)
            if pkey not in s.production:
                j.set(s.production, pkey, [])
            j.insort(s.production[pkey], produced)
            j.set(s.produced_kg, pkey, s.produced_kg.get(pkey, Decimal(0)) + lot.mass_kg)
    return True


def check_time(
    ctx: Context,
    lot_id: str,
    event_id: str,
    at: datetime | None,
    actor: str,
    what: str,
    event_type: str = "custody.lot.transformed",
) -> None:
    """An event dated (`at`, as sent) before the lot's previous custody event."""
    last = ctx.state.lots.get(lot_id)
    if at is not None and last is not None:
        ctx.judge(
            "time_contradiction",
            About(lot_id, event_id, event_type, actor),
            lambda: rules.time_contradiction(
                lot_id=lot_id,
                event_id=event_id,
                what=what,
                at=at,
                after="the lot's previous custody event",
                after_at=last,
                actor=actor,
            ),
        )


def on_registered(ctx: Context, ev: LotRegistered) -> None:
    lot = ev.lot
    if new_lot(ctx, lot) and (lot.tag is not None or lot.seal is not None):  # bag-and-tag: see `on_shipped`
        ctx.journal.set(ctx.state.bags, lot.lot_id, Bag(lot.tag, lot.seal, False))
    screening.origin(ctx, lot.lot_id)
    coexistence.judge_lot(ctx, lot.lot_id)  # ASM on or next to an industrial title without an agreement (H5)
    risk_profiles.registered(ctx, lot.lot_id)  # the risk factors of its place (H4)
    screening.backdated(ctx, lot.lot_id)
    about = About(lot.lot_id, lot.event_id, "custody.lot.registered", ev.mine)
    for year in rules.production_years(lot.at, lot.recorded_at, ctx.thresholds):
        screening.capacity(ctx, ev.mine, lot.mineral, year, about)


def on_external(ctx: Context, ev: ExternalDeclared) -> None:
    lot = ev.lot
    if new_lot(ctx, lot):
        s, j = ctx.state, ctx.journal
        declared = DeclaredLot(lot.lot_id, lot.event_id, ev.declared, lot.at, lot.recorded_at)
        j.set(s.declared_lots, lot.lot_id, declared)
        indexes = [(s.declared_by_country, ev.declared.country)]
        if ev.declared.mine is not None:
            indexes.append((s.declared_by_mine, ev.declared.mine))
        for index, key in indexes:
            if key not in index:
                j.set(index, key, [])
            j.append(index[key], lot.lot_id)
        j.set(ctx.changes.declared, lot.lot_id, (statements.declared_json(declared), None))
    screening.declared(ctx, lot.lot_id)  # judged on the declaration as first recorded, as the table keeps it
    risk_profiles.declared_lot(ctx, lot.lot_id)  # the risk factors of the declared place, as a mined lot's
    ctx.judge(
        "undocumented_custody",
        About(lot.lot_id, lot.event_id, "custody.lot.external_declared", lot.custodian),
        lambda: Finding(
            rules.Rule.undocumented_custody,
            lot.lot_id,
            lot.lot_id,
            f"Material declared from outside the system by {lot.custodian} "
            f"(declared origin {ev.declared_country}, supplier {ev.supplier_name})",
            {
                "event_id": lot.event_id,
                "declared_origin": ev.declared_origin,
                "supplier": ev.supplier,
                "mass_kg": ev.mass_kg,
            },
            (lot.custodian,),
        ),
    )


def on_origin_confirmed(ctx: Context, ev: OriginAnswered) -> None:
    """The mine a declaration named confirms it or disputes it (the latest answer counts): the declared origin is
    judged again with it (`screening.answer_fact` clears the `unconfirmed_declared_origin` flag it settles)."""
    s, j, c = ctx.state, ctx.journal, ctx.changes
    lot = s.declared_lots.get(ev.lot_id)
    if lot is None or lot.declared.mine != ev.by:
        raise ValueError(f"{ev.by} answered for lot {ev.lot_id}, which no declaration names it the mine of")
    answer = OriginAnswer(ev.confirmed, ev.note, ev.event_id, ev.by, ev.at)
    j.set(s.origin_answers, ev.lot_id, answer)
    pending = c.declared.get(ev.lot_id)
    j.set(c.declared, ev.lot_id, (pending[0] if pending else None, statements.answer_json(answer)))
    screening.declared(ctx, ev.lot_id, rejudge=screening.answer_fact(answer, ev.lot_id))


def on_consumed(ctx: Context, ev: Consumed) -> None:
    step = ev.step
    check_time(ctx, step.lot_id, step.event_id, step.occurred_at, step.actor, "Consumed", "custody.lot.consumed")
    ctx.journal.set(ctx.changes.consumptions, ev.row[0], ev.row)  # the filings' roots


def on_recycled(ctx: Context, lot: NewLot) -> None:
    """A recycler's (or a smelter's taking scrap) origin lot: the lot and its first holder. None of the rules that
    judge a mine's production (origin, ASM, capacity, backdating, a place's risk factors) judge it: it was collected,
    not mined; a substantiated grievance against the recycler still reaches it (`grievances.on_new_lot`)."""
    new_lot(ctx, lot)


def on_product(ctx: Context, ev: ProductChanged) -> None:
    ctx.journal.set(ctx.changes.products, ev.row[0], ev.row)
