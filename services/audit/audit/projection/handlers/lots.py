"""Lots coming into being (registered at a mine, declared from outside), and the check of a lot's event times."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from audit import rules
from audit.projection import screening
from audit.projection.context import About, Context
from audit.projection.decode import CustodyStep, ExternalDeclared, LotRegistered, NewLot, intern, intern_opt
from audit.projection.state import MineLot
from audit.rules import Finding


def new_lot(ctx: Context, lot: NewLot) -> bool:
    """The lot and its first holder; returns whether the lot is new (an existing lot id is left as it is)."""
    s, j, c = ctx.state, ctx.journal, ctx.changes
    j.set(c.holders, (lot.lot_id, lot.custodian), None)
    if lot.lot_id in s.lots:
        return False
    j.set(s.lots, lot.lot_id, lot.at)
    j.set(c.lots, lot.lot_id, lot)  # the record is the row
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
        )
        j.set(s.mine_lots, lot.lot_id, mine)
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
    new_lot(ctx, lot)
    screening.origin(ctx, lot.lot_id)
    screening.backdated(ctx, lot.lot_id)
    about = About(lot.lot_id, lot.event_id, "custody.lot.registered", ev.mine)
    for year in rules.production_years(lot.at, lot.recorded_at, ctx.thresholds):
        screening.capacity(ctx, ev.mine, lot.mineral, year, about)


def on_external(ctx: Context, ev: ExternalDeclared) -> None:
    lot = ev.lot
    new_lot(ctx, lot)
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


def on_consumed(ctx: Context, ev: CustodyStep) -> None:
    check_time(ctx, ev.lot_id, ev.event_id, ev.occurred_at, ev.actor, "Consumed", "custody.lot.consumed")
