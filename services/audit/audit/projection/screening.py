"""Judging with reference data: a lot's origin, a shipment's transit countries, a smelting's smelter and a mine's
declared capacity, each with the CAHRA list and certifications as known at the time.

Registry facts carry `known_at` (the time of the event that told us). A lot's origin and a transformation's smelter
are judged at every moment their reference data changed from the custody event on ("horizons"), and judged again
whenever such data arrives (re-screening). The flags are the union, so live processing and a replay from offset 0
reach the same set whatever order the two topics interleave in. A re-screening is also a re-judgement (`rejudged`):
its finding for a flag that exists replaces that flag's evidence when it differs (data known before the custody event
that reached audit after it), so the evidence too ends as a replay's, which reads the registry first. A flag the
re-judgement no longer finds at all (`cleared`: the rule does not hold for its cause with the data now known, e.g. an
RMAP conformant certification valid before a smelting, delivered after it) is `Cleared` by the fact that arrived: it
is withdrawn unless a person decided on it (`statements.rejudge_parts`), as a replay would never raise it.

Each judgement runs on its own (`Context.judge`): one that raises on odd data becomes an `unjudgeable_event` flag on
the custody event it was about (the same flag whichever event led to judging it), and the rest goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from audit import rules
from audit.projection.context import About, Context
from audit.projection.decode import CahraUpdated, CertificationChanged, ParticipantChanged
from audit.projection.flags import Cleared, Why
from audit.projection.state import DeclaredLot, MineLot, OriginAnswer, Smelting
from audit.rules import Area, Cert, Declaration, Finding, Rule

Key = tuple[str, str]  # (rule, cause): one flag
Rejudge = bool | Why  # a re-judgement, and the reference fact that led to it (True: a fact not named)


def _areas(ctx: Context, country: str | None) -> list[Area]:
    s = ctx.state
    return [s.areas[aid][1] for _, aid in s.areas_by_country.get(country or "", ())]


def _certs(ctx: Context, participant: str) -> list[tuple[datetime, Cert]]:
    return [
        (known_at, Cert(scheme, value, valid_from, valid_until, i))
        for i, (known_at, _, scheme, value, valid_from, valid_until) in enumerate(ctx.state.certs.get(participant, ()))
    ]


def _horizons(recorded_at: datetime, certs: list[tuple[datetime, Cert]]) -> list[list[Cert]]:
    """What was known when the custody event was recorded, then after each later certification change."""
    moments = [recorded_at, *sorted({k for k, _ in certs if k > recorded_at})]
    return [[c for k, c in certs if k <= m] for m in moments]


def certification_fact(ev: CertificationChanged) -> Why:
    """A certification as the fact that re-judged (and maybe cleared) a flag."""
    until = ev.valid_until.isoformat() if ev.valid_until else None
    return Why(
        {
            "certification": ev.id,
            "participant": ev.participant_id,
            "scheme": ev.scheme,
            "value": ev.value,
            "valid_from": ev.valid_from.isoformat(),
            "valid_until": until,
            "known_at": ev.known_at.isoformat(),
        },
        f"certification {ev.scheme} {ev.value} of {ev.participant_id}, valid from {ev.valid_from}"
        + (f" to {until}" if until else ""),
    )


def cahra_fact(ev: CahraUpdated) -> Why:
    """A CAHRA listing (or its correction) as the fact that re-judged (and maybe cleared) a flag."""
    to = ev.effective_to.isoformat() if ev.effective_to else None
    place = f"{ev.country}/{ev.region}" if ev.region else ev.country
    return Why(
        {
            "cahra_area": ev.id,
            "country": ev.country,
            "region": ev.region,
            "effective_from": ev.effective_from.isoformat(),
            "effective_to": to,
            "source": ev.source,
            "known_at": ev.known_at.isoformat(),
        },
        f"CAHRA listing {ev.id} of {place}, effective from {ev.effective_from}" + (f" to {to}" if to else ""),
    )


def origin_keys(lot_id: str, mine: str) -> list[Key]:
    """Every flag judging a lot's origin can raise (`rules.origin_findings`)."""
    cause = f"{lot_id}:origin"
    return [
        (Rule.origin_in_cahra, cause),
        (Rule.uncertified_asm_in_cahra, cause),
        (Rule.certified_asm_in_cahra, cause),
        (Rule.committed_asm_in_cahra, cause),
        (Rule.lsm_without_irma, f"{mine}:irma:{lot_id}"),
        (Rule.lsm_irma_transparency, f"{mine}:irma:{lot_id}"),
        (Rule.origin_region_unknown, cause),
    ]


def transit_keys(shipment_id: str, countries: Iterable[str], regions: Iterable[str] = ()) -> list[Key]:
    """Every flag judging a shipment's transit countries and regions can raise (`rules.transit_findings`)."""
    return [
        *((Rule.transit_through_cahra, f"{shipment_id}:{c}") for c in dict.fromkeys(countries)),
        *((Rule.transit_through_cahra, f"{shipment_id}:{r}") for r in dict.fromkeys(regions)),
        *((Rule.transit_region_unknown, f"{shipment_id}:{c}") for c in dict.fromkeys(countries)),
    ]


def declared_keys(lot_id: str, declared: Declaration) -> list[Key]:
    """Every flag judging a declared origin can raise (`rules.declared_origin_findings`, and
    `rules.unconfirmed_declared_origin` for a declaration naming a registered mine)."""
    keys = origin_keys(lot_id, declared.mine or declared.declarant)
    if declared.mine is not None:
        keys += [
            (Rule.unconfirmed_declared_origin, f"{lot_id}:declared-origin"),
            (Rule.unconfirmed_declared_origin, f"{lot_id}:declared-origin:disputed"),
        ]
    return keys


def participant_fact(ev: ParticipantChanged) -> Why:
    """A participant's registration or change (a mine's region known at last) as the fact that re-judged a flag."""
    return Why(
        {
            "participant": ev.id,
            "version": ev.version,
            "country": ev.country,
            "region": ev.region,
            "mining_type": ev.mining_type,
        },
        f"registry: participant {ev.id} (version {ev.version}) in {ev.region or ev.country}",
    )


def answer_fact(a: OriginAnswer, lot_id: str) -> Why:
    """The named mine's answer to a declaration as the fact that re-judged (and maybe cleared) a flag."""
    verb = "confirmed" if a.confirmed else "disputed"
    return Why(
        {
            "origin_confirmation": a.event_id,
            "lot_id": lot_id,
            "mine": a.by,
            "confirmed": a.confirmed,
            "note": a.note,
            "at": a.at.isoformat(),
        },
        f"mine {a.by} {verb} the declared origin of {lot_id}",
    )


def smelter_keys(transformation_id: str) -> list[Key]:
    """The flags judging a transformation's smelter can raise (`rules.smelter_findings`)."""
    return [(Rule.smelter_not_rmap_conformant, transformation_id), (Rule.smelter_rmap_active, transformation_id)]


def cleared(possible: Iterable[Key], found: Iterable[Finding]) -> list[Key]:
    """The flags a judgement could raise that the rule no longer holds for (not in `found`, the union of its
    findings over every horizon). Pure: whether such a flag exists, and what becomes of it, is the statement's."""
    held = {(f.rule, f.cause) for f in found}
    return [k for k in possible if k not in held]


def rejudged(
    ctx: Context, found: list[Finding], rejudge: Rejudge, possible: Iterable[Key] = (), lot_id: str = ""
) -> list[Finding]:
    """`found`, recorded as a re-judgement when `rejudge` (reference data arrived): each replaces the evidence of its
    flag if that differs, so a flag first judged without data known before its custody event (which reached audit
    later) ends with the evidence a replay gives it. The latest per (rule, cause) in a batch stays, also for a flag
    the batch raises. Each of `possible` not found is `Cleared` by the fact (`rejudge`), and one this batch was
    about to raise is not raised after all: a replay, judging with that fact from the start, raises neither."""
    if rejudge:
        found = [ctx.marked(f) for f in found]  # raised or re-judged showing a custody correction of its grounds
        for f in found:
            key = (f.rule, f.cause)
            ctx.journal.set(ctx.changes.rejudged, key, f)
            ctx.journal.set(ctx.changes.findings, key, f)  # a flag this batch raises is raised with the latest
        why = rejudge if isinstance(rejudge, Why) else Why({}, "reference data received since")
        for gone in cleared(possible, found):
            ctx.journal.set(ctx.changes.rejudged, gone, Cleared(gone[0], gone[1], lot_id, why))
            if gone in ctx.changes.findings:
                ctx.journal.pop(ctx.changes.findings, gone)
    return found


def origin(ctx: Context, lot_id: str, rejudge: Rejudge = False) -> None:
    lot = ctx.state.mine_lots.get(lot_id)
    if lot is None:
        return
    about = About(lot_id, lot.event_id, "custody.lot.registered", lot.mine)
    ctx.judge(
        "origin_in_cahra",
        about,
        lambda: rejudged(ctx, _origin(ctx, lot), rejudge, origin_keys(lot_id, lot.mine), lot_id),
    )


def _origin(ctx: Context, lot: MineLot) -> list[Finding]:
    lot_id = lot.lot_id
    areas = _areas(ctx, lot.country)
    # an industrial titleholder's lot an ASM group produced is screened as that group's ASM (H5)
    mine, mining_type = rules.asm_producer(mine=lot.mine, mining_type=lot.mining_type, produced_by=lot.produced_by)
    certs = _certs(ctx, mine)
    region = lot.region
    if region is None:  # registered without a region: the one the registry knows now, if it knows one since
        known_mine = ctx.state.mines.get(lot.mine)
        if known_mine is not None and known_mine[0] == lot.country:
            region = known_mine[1]
    findings: dict[tuple[str, str], Finding] = {}
    for known in _horizons(lot.recorded_at, certs):
        for f in rules.origin_findings(
            lot_id=lot_id,
            event_id=lot.event_id,
            mine=mine,
            country=lot.country,
            region=region,
            mining_type=mining_type,
            on=lot.origin_at.date(),
            areas=areas,
            certs=known,
        ):
            findings.setdefault((f.rule, f.cause), f)
    return list(findings.values())


def transit(ctx: Context, shipment_id: str, rejudge: Rejudge = False) -> None:
    t = ctx.state.transits.get(shipment_id)
    if t is None:
        return
    areas = [a for c in t.countries for a in _areas(ctx, c)]
    ctx.judge(
        "transit_through_cahra",
        About(t.lot_id, t.event_id, "custody.lot.shipped", t.sender),
        lambda: rejudged(
            ctx,
            rules.transit_findings(
                lot_id=t.lot_id,
                shipment_id=shipment_id,
                event_id=t.event_id,
                countries=list(t.countries),
                on=t.shipped_at.date(),
                areas=areas,
                sender=t.sender,
                receiver=t.receiver,
                regions=t.regions,
            ),
            rejudge,
            transit_keys(shipment_id, t.countries, t.regions),
            t.lot_id,
        ),
    )


def declared(ctx: Context, lot_id: str, rejudge: Rejudge = False) -> None:
    """A declared origin (`POST /lots/external`) screened like a mined one, and, when it names a registered mine,
    unconfirmed until that mine confirms it."""
    lot = ctx.state.declared_lots.get(lot_id)
    if lot is None:
        return
    about = About(lot_id, lot.event_id, "custody.lot.external_declared", lot.declared.declarant)
    ctx.judge(
        "declared_origin",
        about,
        lambda: rejudged(ctx, _declared(ctx, lot), rejudge, declared_keys(lot_id, lot.declared), lot_id),
    )


def _declared(ctx: Context, lot: DeclaredLot) -> list[Finding]:
    d = lot.declared
    registered = ctx.state.mines.get(d.mine) if d.mine is not None else None
    country = registered[0] if registered is not None else d.country
    areas = _areas(ctx, country)
    findings: dict[tuple[str, str], Finding] = {}
    # A named mine audit knows is screened with its certifications as the registry holds them, at every horizon;
    # otherwise with those declared.
    horizons: list[list[Cert] | None] = (
        list(_horizons(lot.recorded_at, _certs(ctx, d.mine))) if registered is not None and d.mine else [None]
    )
    for known in horizons:
        for f in rules.declared_origin_findings(
            lot_id=lot.lot_id,
            event_id=lot.event_id,
            declared=d,
            registered=registered,
            on=lot.received_at.date(),
            areas=areas,
            certs=known,
        ):
            findings.setdefault((f.rule, f.cause), f)
    a = ctx.state.origin_answers.get(lot.lot_id)
    answer = (a.confirmed, a.note, a.event_id) if a is not None else None
    unconfirmed = rules.unconfirmed_declared_origin(lot_id=lot.lot_id, event_id=lot.event_id, declared=d, answer=answer)
    if unconfirmed is not None:
        findings.setdefault((unconfirmed.rule, unconfirmed.cause), unconfirmed)
    return list(findings.values())


def smelter(ctx: Context, transformation_id: str, rejudge: Rejudge = False) -> None:
    t = ctx.state.smeltings.get(transformation_id)
    if t is None:
        return
    lot_id = t.outputs[0] if t.outputs else transformation_id
    keys = smelter_keys(transformation_id) if t.outputs else []
    about = About(lot_id, t.event_id, "custody.lot.transformed", t.actor)
    ctx.judge(
        "smelter_not_rmap_conformant",
        about,
        lambda: rejudged(ctx, _smelter(ctx, transformation_id, t), rejudge, keys, lot_id),
    )


def _smelter(ctx: Context, transformation_id: str, t: Smelting) -> list[Finding]:
    """The union over the horizons, except that RMAP Active counts at the last one only: Active is an assessment
    under way, and its outcome known since (Conformant or not, valid on the day) takes its place, so a later
    Conformant certification clears the Active flag (`Cleared`) and a Non-conformant one replaces it."""
    certs = _certs(ctx, t.actor)
    findings: dict[tuple[str, str], Finding] = {}
    horizons = _horizons(t.recorded_at, certs)
    for n, known in enumerate(horizons, 1):
        for f in rules.smelter_findings(
            lot_ids=list(t.outputs),
            transformation_id=transformation_id,
            event_id=t.event_id,
            actor=t.actor,
            actor_kind=t.actor_kind,
            on=t.occurred_at.date(),
            certs=known,
            kind=t.kind,
            input_forms=t.input_forms,
            output_forms=t.output_forms,
        ):
            if f.rule is Rule.smelter_rmap_active and n < len(horizons):
                continue
            findings.setdefault((f.rule, f.cause), f)
    return list(findings.values())


def capacity(ctx: Context, mine: str, mineral: str, year: int, about: About) -> None:
    """A mine's output in a year against its declared annual capacity (one flag per mine, mineral and year: the
    first stays). A year's output counts the origin lots dated in it and those recorded in it (`State.production`),
    so backdating lots into earlier years does not start the count again."""
    ctx.judge("capacity_exceeded", about, lambda: _capacity(ctx, mine, mineral, year))


def _capacity(ctx: Context, mine: str, mineral: str, year: int) -> list[Finding]:
    s = ctx.state
    known = s.capacities.get(mine)
    cap = known[1].get(mineral) if known and isinstance(known[1], dict) else None
    if cap is None:
        return []
    declared = Decimal(str(cap))
    key = (mine, mineral, year)
    cause = f"{mine}:{mineral}:{year}"
    if cause in s.capacity_flagged or s.produced_kg.get(key, Decimal(0)) <= declared:
        return []  # flagged once already (the first flag stays), or nothing crossed the declared capacity yet
    # The lot at which the year's running total (in production order) first passes the declared capacity:
    # the same lot whatever order the lots' events were delivered in.
    running = Decimal(0)
    for _, _, lot_id, kg in s.production.get(key, ()):
        running += kg
        if running > declared:
            f = rules.capacity_exceeded(
                mine=mine, lot_id=lot_id, mineral=mineral, year=year, declared_kg=declared, registered_kg=running
            )
            if f is None:
                return []
            ctx.journal.add(s.capacity_flagged, cause)
            return [f]
    return []


def backdated(ctx: Context, lot_id: str) -> None:
    """An origin lot recorded long after the date it was given."""
    lot = ctx.state.mine_lots.get(lot_id)
    if lot is None:
        return
    ctx.judge(
        "backdated_origin",
        About(lot_id, lot.event_id, "custody.lot.registered", lot.mine),
        lambda: rules.backdated_origin(
            lot_id=lot_id,
            event_id=lot.event_id,
            mine=lot.mine,
            origin_at=lot.origin_at,
            recorded_at=lot.recorded_at,
            t=ctx.thresholds,
        ),
    )
