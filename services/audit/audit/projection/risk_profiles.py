"""Screening origins with the registry's country and region risk profiles (`rules.risk_factor_findings`): the risk
factors of the OECD Due Diligence Guidance (Annex II) that apply to where a lot comes from, on its production date.

A lot registered at a mine is screened at registration (`registered`), a lot declared from outside with its declared
place (`declared_lot`, or `screen_declared` with the place given). Each is screened with every profile known (no
horizons: a profile carries no certification-like history the rule reads at a moment), and screened again when a
profile of its country arrives or is corrected: a re-judgement (`screening.rejudged`), so the flag's evidence and
severity follow the profile, and a correction that leaves no factor above none clears it (`Cleared`: withdrawn,
unless a person decided on it), as a replay, which reads the registry first, would never raise it.

Per event the cost is a dict lookup: a lot from a country without profiles is not judged at all.
"""

from __future__ import annotations

from datetime import date

from audit import rules
from audit.projection.context import About, Context
from audit.projection.decode import RiskProfileUpdated
from audit.projection.flags import Why
from audit.projection.screening import Key, Rejudge, rejudged
from audit.rules import Finding, RiskProfile, Rule


def keys(lot_id: str) -> list[Key]:
    """The one flag screening a lot's origin with the risk profiles can raise."""
    return [(Rule.origin_risk_factors, f"{lot_id}:risk_factors")]


def profile_fact(ev: RiskProfileUpdated) -> Why:
    """A risk profile (or its correction) as the fact that re-judged (and maybe cleared) a flag."""
    to = ev.effective_to.isoformat() if ev.effective_to else None
    place = f"{ev.country}/{ev.region}" if ev.region else ev.country
    return Why(
        {
            "risk_profile": ev.id,
            "country": ev.country,
            "region": ev.region,
            "factor": ev.factor,
            "level": ev.level,
            "effective_from": ev.effective_from.isoformat(),
            "effective_to": to,
            "source": ev.source,
            "known_at": ev.known_at.isoformat(),
        },
        f"risk profile {ev.id} of {place}: {ev.factor} {ev.level}, effective from {ev.effective_from}"
        + (f" to {to}" if to else ""),
    )


def profiles_of(ctx: Context, country: str | None) -> list[RiskProfile]:
    s = ctx.state
    return [s.risk_profiles[pid][1] for pid in s.risk_profiles_by_country.get(country or "", ())]


def _screen(
    ctx: Context,
    *,
    lot_id: str,
    event_id: str,
    event_type: str,
    participant: str | None,
    country: str | None,
    region: str | None,
    on: date,
    origin: str,
    rejudge: Rejudge,
) -> None:
    if not rejudge and not ctx.state.risk_profiles_by_country.get(country or ""):
        return  # no profile of that country: nothing to find (and no flag to re-judge)

    def judging() -> list[Finding]:
        found = rules.risk_factor_findings(
            lot_id=lot_id,
            event_id=event_id,
            participant=participant,
            country=country,
            region=region,
            on=on,
            profiles=profiles_of(ctx, country),
            origin=origin,
        )
        return rejudged(ctx, found, rejudge, keys(lot_id), lot_id)

    ctx.judge("origin_risk_factors", About(lot_id, event_id, event_type, participant), judging)


def registered(ctx: Context, lot_id: str, rejudge: Rejudge = False) -> None:
    """A lot registered at a mine: its mine's place on its production date."""
    lot = ctx.state.mine_lots.get(lot_id)
    if lot is None:
        return
    _screen(
        ctx,
        lot_id=lot_id,
        event_id=lot.event_id,
        event_type="custody.lot.registered",
        participant=lot.mine,
        country=lot.country,
        region=lot.region,
        on=lot.origin_at.date(),
        origin="mine",
        rejudge=rejudge,
    )


def screen_declared(
    ctx: Context,
    lot_id: str,
    event_id: str,
    country: str | None,
    region: str | None,
    on: date,
    rejudge: Rejudge = False,
    declarant: str | None = None,
) -> None:
    """A lot declared from outside the system (`custody.lot.external_declared`), with the place it was declared from
    and the day it is judged on. The flag names the declarant, as the declared origin's other findings do (the
    lot's holders see it too)."""
    _screen(
        ctx,
        lot_id=lot_id,
        event_id=event_id,
        event_type="custody.lot.external_declared",
        participant=declarant,
        country=country,
        region=region,
        on=on,
        origin="declared",
        rejudge=rejudge,
    )


def declared_lot(ctx: Context, lot_id: str, rejudge: Rejudge = False) -> None:
    """A declared lot as the projection keeps it (`State.declared_lots`): its declared place, on the day it was
    received. Call it where a declaration is handled (`handlers.lots.on_external`); profiles re-screen these too."""
    lot = ctx.state.declared_lots.get(lot_id)
    if lot is None:
        return
    d = lot.declared
    screen_declared(ctx, lot_id, lot.event_id, d.country, d.region, lot.received_at.date(), rejudge, d.declarant)


def rescreen(ctx: Context, ev: RiskProfileUpdated) -> None:
    """A profile arrived or was corrected: every lot from its place (its country, or only its region) again."""
    s = ctx.state
    why = profile_fact(ev)
    for lot_id in s.lots_by_country.get(ev.country, ()):
        lot = s.mine_lots.get(lot_id)
        if lot is not None and (ev.region is None or lot.region == ev.region):
            registered(ctx, lot_id, rejudge=why)
    for lot_id in s.declared_by_country.get(ev.country, ()):
        declared = s.declared_lots.get(lot_id)
        if declared is not None and (ev.region is None or declared.declared.region == ev.region):
            declared_lot(ctx, lot_id, rejudge=why)
