"""Country and region risk profiles from the registry (`registry.risk_profile.updated`): kept in the state and in
`risk_profiles`, and every lot from that place screened again with them (`projection.risk_profiles`)."""

from __future__ import annotations

from audit.projection import risk_profiles
from audit.projection.context import Context
from audit.projection.decode import RiskProfileUpdated
from audit.rules import RiskProfile


def on_risk_profile(ctx: Context, ev: RiskProfileUpdated) -> None:
    s, j = ctx.state, ctx.journal
    known = s.risk_profiles.get(ev.id)
    if known is None:
        known_at = ev.known_at
        profile = RiskProfile(
            ev.id, ev.country, ev.region, ev.factor, ev.level, ev.effective_from, ev.effective_to, ev.source
        )
        if ev.country not in s.risk_profiles_by_country:
            j.set(s.risk_profiles_by_country, ev.country, [])
        j.append(s.risk_profiles_by_country[ev.country], ev.id)
    else:  # a correction: the level, period and source change; the place, the factor and when it became known do not
        known_at, old = known
        profile = RiskProfile(
            ev.id, old.country, old.region, old.factor, ev.level, ev.effective_from, ev.effective_to, ev.source
        )
    j.set(s.risk_profiles, ev.id, (known_at, profile))
    j.set(
        ctx.changes.risk_profiles,
        ev.id,
        (
            ev.id,
            profile.country,
            profile.region,
            profile.factor,
            profile.level,
            profile.effective_from,
            profile.effective_to,
            profile.source,
            known_at,
        ),
    )
    risk_profiles.rescreen(ctx, ev)
