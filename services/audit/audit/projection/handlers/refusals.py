"""Refused custody attempts: drawing more than a lot holds is a finding of its own."""

from __future__ import annotations

from audit import rules
from audit.projection.context import Context
from audit.projection.decode import BeyondRemaining


def on_rejected(ctx: Context, ev: BeyondRemaining) -> None:
    ctx.find(
        [
            rules.beyond_remaining(
                lot_id=ev.lot_id, event_id=ev.event_id, actor=ev.actor, action=ev.action, detail=ev.detail
            )
        ]
    )
