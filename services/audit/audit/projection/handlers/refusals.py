"""Refused custody attempts: drawing more than a lot holds is a finding of its own."""

from __future__ import annotations

from audit import rules
from audit.projection.context import About, Context
from audit.projection.decode import BeyondRemaining


def on_rejected(ctx: Context, ev: BeyondRemaining) -> None:
    ctx.judge(
        "beyond_remaining",
        About(ev.lot_id, ev.event_id, "custody.attempt.rejected", ev.actor),
        lambda: rules.beyond_remaining(
            lot_id=ev.lot_id, event_id=ev.event_id, actor=ev.actor, action=ev.action, detail=ev.detail
        ),
    )
