"""Reference data from the registry: participants (and mines' declared capacity), certifications, the CAHRA list.
A certification or a listing re-screens what it bears on: a re-judgement, which also replaces the evidence of a flag
judged before this fact reached audit (`screening.rejudged`)."""

from __future__ import annotations

from audit.projection import screening
from audit.projection.context import About, Context
from audit.projection.decode import CahraUpdated, CertificationChanged, ParticipantChanged, intern, intern_opt
from audit.rules import Area


def on_participant(ctx: Context, ev: ParticipantChanged) -> None:
    s = ctx.state
    known = s.capacities.get(ev.id)
    if known is not None and known[0] > ev.version:
        return  # an older version than what is known: the table keeps the newer one
    row = (
        *(ev.id, ev.kind, ev.name, ev.country, ev.region, ev.mining_type, ev.capacity_json, ev.version),
        *(ev.disclosure, ev.rmi_smelter_id),
    )
    ctx.journal.set(s.capacities, ev.id, (ev.version, ev.capacity))
    ctx.journal.set(ctx.changes.participants, ev.id, row)
    if ev.kind != "mine":
        return
    if (known is None or known[1] != ev.capacity) and s.lots_by_mine.get(ev.id):
        _capacity_known(ctx, ev.id)
    place = (intern(ev.country), intern_opt(ev.region), intern_opt(ev.mining_type))
    if s.mines.get(ev.id) == place:
        return
    ctx.journal.set(s.mines, ev.id, place)
    # What this mine's registry data bears on: its lots registered without a region (a region known later counts)
    # and the declarations naming it (screened with its registry data).
    why = screening.participant_fact(ev)
    for lot_id in s.lots_by_mine.get(ev.id, ()):
        if s.mine_lots[lot_id].region is None:
            screening.origin(ctx, lot_id, rejudge=why)
    for lot_id in s.declared_by_mine.get(ev.id, ()):
        screening.declared(ctx, lot_id, rejudge=why)


def _capacity_known(ctx: Context, mine: str) -> None:
    """A mine's declared capacity known (or changed) after lots of its were applied: each year of its production is
    judged against it, as it would have been had the capacity come first (the lot that passes it is found in
    production order, whatever order the lots came in; a year flagged once stays flagged)."""
    s = ctx.state
    for (who, mineral, year), lots in list(s.production.items()):
        if who != mine or not lots:
            continue
        first = s.mine_lots.get(lots[0][2])
        about = About(lots[0][2], first.event_id if first else lots[0][2], "custody.lot.registered", mine)
        screening.capacity(ctx, mine, mineral, year, about)


def on_certification(ctx: Context, ev: CertificationChanged) -> None:
    s, j = ctx.state, ctx.journal
    who = ev.participant_id
    if ev.id not in s.cert_ids:  # a certification is recorded once; the first record stays
        j.add(s.cert_ids, ev.id)
        if who not in s.certs:
            j.set(s.certs, who, [])
        j.insort(s.certs[who], (ev.known_at, ev.id, ev.scheme, ev.value, ev.valid_from, ev.valid_until))
        j.append(ctx.changes.certs, (ev.id, who, ev.scheme, ev.value, ev.valid_from, ev.valid_until, ev.known_at))
    # Re-screen what this participant did: the lots it mined, the transformations it ran.
    why = screening.certification_fact(ev)  # what clears a flag the rule no longer holds for
    for lot_id in s.lots_by_mine.get(who, ()):
        screening.origin(ctx, lot_id, rejudge=why)
    for lot_id in s.lots_by_producer.get(who, ()):  # lots an ASM group produced for a titleholder: screened as its
        screening.origin(ctx, lot_id, rejudge=why)
    for lot_id in s.declared_by_mine.get(who, ()):  # declarations naming it are screened with its certifications
        screening.declared(ctx, lot_id, rejudge=why)
    for tid in s.smeltings_by_actor.get(who, ()):
        screening.smelter(ctx, tid, rejudge=why)


def on_cahra(ctx: Context, ev: CahraUpdated) -> None:
    s, j = ctx.state, ctx.journal
    known = s.areas.get(ev.id)
    if known is None:
        known_at = ev.known_at
        area = Area(ev.id, ev.country, ev.region, ev.effective_from, ev.effective_to, ev.source)
        if ev.country not in s.areas_by_country:
            j.set(s.areas_by_country, ev.country, [])
        j.insort(s.areas_by_country[ev.country], (known_at, ev.id))
    else:  # a correction: the listing dates and source change, the place and when it became known do not
        known_at, old = known
        area = Area(ev.id, old.country, old.region, ev.effective_from, ev.effective_to, ev.source)
    j.set(s.areas, ev.id, (known_at, area))
    j.set(
        ctx.changes.areas,
        ev.id,
        (ev.id, area.country, area.region, ev.effective_from, ev.effective_to, ev.source, known_at),
    )
    # Re-screen the lots from that country or region, and shipments routed through it.
    why = screening.cahra_fact(ev)  # what clears a flag the rule no longer holds for (a listing's correction)
    for lot_id in s.lots_by_country.get(ev.country, ()):
        # a region's listing bears on that region's lots and on those whose region is unknown (origin_region_unknown)
        if ev.region is None or s.mine_lots[lot_id].region in (ev.region, None):
            screening.origin(ctx, lot_id, rejudge=why)
    for lot_id in s.declared_by_country.get(ev.country, ()):
        screening.declared(ctx, lot_id, rejudge=why)
    for sid in s.transits_by_country.get(ev.country, ()):  # a region's listing too (transit_region_unknown)
        screening.transit(ctx, sid, rejudge=why)
