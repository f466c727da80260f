"""Shipments and receipts: the receipt's mass, seal, tag and times against the shipment's, transit through a CAHRA,
a lot's first shipment against the seal and tag its mine registered it with (bag-and-tag), and the lot's new
custodian."""

from __future__ import annotations

from datetime import datetime

from audit import rules
from audit.projection import screening
from audit.projection.context import About, Context
from audit.projection.decode import Received, Shipped, intern, utc
from audit.projection.handlers.lots import check_time
from audit.projection.state import Transit


def on_shipped(ctx: Context, ev: Shipped) -> None:
    sid = ev.shipment_id
    check_time(ctx, ev.lot_id, ev.event_id, ev.sent, ev.actor, "Shipped", "custody.lot.shipped")
    s, j = ctx.state, ctx.journal
    if sid in s.open_shipments or sid in s.transits:  # shipment ids are unique: a repeat changes nothing
        screening.transit(ctx, sid)  # judged on the shipment as first recorded, as the table keeps it
        return
    j.add(s.open_shipments, sid)
    j.set(ctx.changes.shipments, sid, ev.row)
    first_shipment(ctx, ev)
    if ev.transit_countries:
        t = Transit(
            ev.lot_id,
            ev.event_id,
            tuple(map(intern, ev.transit_countries)),
            ev.shipped_at,
            intern(ev.sender),
            intern(ev.receiver),
            tuple(map(intern, ev.transit_regions)),
        )
        j.set(s.transits, sid, t)
        for c in dict.fromkeys(ev.transit_countries):
            if c not in s.transits_by_country:
                j.set(s.transits_by_country, c, [])
            j.append(s.transits_by_country[c], sid)
    screening.transit(ctx, sid)


def first_shipment(ctx: Context, ev: Shipped) -> None:
    """Bag-and-tag: the first shipment of a lot a mine registered with a seal or a tag carries them both (a tag only
    when the event could carry one: custody published none before 2026-12-05)."""
    bag = ctx.state.bags.get(ev.lot_id)
    if bag is None or bag.shipped:  # not registered with a tag or seal, or shipped before
        return
    lot_id, sid = ev.lot_id, ev.shipment_id
    about = About(lot_id, ev.event_id, "custody.lot.shipped", ev.actor)
    who = (ev.sender, ev.receiver)
    ctx.judge(
        "seal_mismatch",
        about,
        lambda: rules.first_shipment_seal(
            lot_id=lot_id,
            shipment_id=sid,
            event_id=ev.event_id,
            registered_seal=bag.seal,
            shipped_seal=ev.seal,
            who=who,
        ),
    )
    if ev.tagged:
        ctx.judge(
            "tag_mismatch",
            about,
            lambda: rules.first_shipment_tag(
                lot_id=lot_id,
                shipment_id=sid,
                event_id=ev.event_id,
                registered_tag=bag.tag,
                shipped_tag=ev.tag,
                who=who,
            ),
        )
    # Shipped: only its tag is kept (every receipt is compared with it); the seal is never read again.
    ctx.journal.pop(ctx.state.bags, lot_id)
    if bag.tag is not None:
        ctx.journal.set(ctx.state.shipped_tags, lot_id, bag.tag)


def on_received(ctx: Context, ev: Received) -> None:
    """The receipt's rules, each judged on its own (one that cannot be judged is flagged as such and the others
    still run), then the lot's new custodian."""
    sid, lot_id, by = ev.shipment_id, ev.lot_id, ev.receiver
    who, t = (ev.sender, by), ctx.thresholds
    about = About(lot_id, ev.event_id, "custody.lot.received", by)
    judge = ctx.judge
    judge(
        "mass_mismatch",
        about,
        lambda: rules.mass_mismatch(
            lot_id=lot_id,
            shipment_id=sid,
            event_id=ev.event_id,
            shipped_kg=ev.shipped_kg,
            received_kg=ev.received_kg,
            who=who,
            t=t,
        ),
    )
    judge(
        "seal_mismatch",
        about,
        lambda: rules.seal_mismatch(
            lot_id=lot_id,
            shipment_id=sid,
            event_id=ev.event_id,
            shipped_seal=ev.shipped_seal,
            received_seal=ev.received_seal,
            who=who,
        ),
    )
    if ev.tagged:
        registered = ctx.state.shipped_tags.get(lot_id)
        if registered is None and (bag := ctx.state.bags.get(lot_id)) is not None:
            registered = bag.tag
        judge(
            "tag_mismatch",
            about,
            lambda: rules.receipt_tag_mismatch(
                lot_id=lot_id,
                shipment_id=sid,
                event_id=ev.event_id,
                registered_tag=registered,
                shipped_tag=ev.shipped_tag,
                received_tag=ev.received_tag,
                who=who,
            ),
        )
    judge(
        "time_contradiction",
        about,
        lambda: rules.received_before_shipped(
            lot_id=lot_id,
            shipment_id=sid,
            event_id=ev.event_id,
            shipped_at=ev.shipped_at,
            received_at=ev.received_at,
            who=who,
        ),
    )
    judge(
        "transit_overdue",
        about,
        lambda: rules.transit_overdue(
            lot_id=lot_id,
            shipment_id=sid,
            shipped_at=ev.shipped_at,
            max_transit_days=ev.max_transit_days,
            now=ev.received_at,
            sender=ev.sender,
            receiver=by,
            t=t,
        ),
    )
    at = utc(ev.received_at)
    s, j, c = ctx.state, ctx.journal, ctx.changes
    if sid in s.open_shipments:
        j.discard(s.open_shipments, sid)
        if sid in c.shipments:  # shipped in this batch: it is written already received
            j.set(c.shipments, sid, (*c.shipments[sid][:9], "received", *c.shipments[sid][10:]))
        else:
            j.set(c.received_shipments, sid, None)
    last = s.lots.get(lot_id)
    if last is not None:
        last = max(last, at)
        j.set(s.lots, lot_id, last)
        if lot_id in c.lots:  # registered in this batch: written with its new custodian
            row = c.lots[lot_id]  # `statements.LOT_COLUMNS`: custodian 10th, last_custody_at 14th
            j.set(c.lots, lot_id, (*row[:9], by, *row[10:13], last, *row[14:]))
        else:
            j.set(c.lot_updates, lot_id, (by, last))
    hand_over(ctx, lot_id, by, None)  # it holds the lot now (again, maybe)
    if ev.sender != by and ev.recorded_at is not None:
        hand_over(ctx, lot_id, ev.sender, ev.recorded_at)  # a former holder from the receipt on


def hand_over(ctx: Context, lot_id: str, participant: str, until: datetime | None) -> None:
    """`participant` holds `lot_id` now (`until` None) or held it until then (`lot_holders.until`). One row per
    (lot, participant) in the batch's statements: a holder this batch was to insert is written here instead."""
    key = (lot_id, participant)
    if key in ctx.changes.holders:
        ctx.journal.pop(ctx.changes.holders, key)
    ctx.journal.set(ctx.changes.hand_overs, key, until)
