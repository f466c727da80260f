"""Transformations (smelting, refining, alloying, splitting, merging...): the genealogy, the output lots, the yield
rule, and the smelter's RMAP status."""

from __future__ import annotations

from audit import rules
from audit.projection import screening
from audit.projection.context import Context
from audit.projection.decode import Transformed, intern
from audit.projection.handlers.lots import check_time, new_lot
from audit.projection.state import Smelting


def on_transformed(ctx: Context, ev: Transformed) -> None:
    tid, by = ev.transformation_id, ev.by
    if ev.step is not None:
        step = ev.step
        check_time(ctx, step.lot_id, step.event_id, step.occurred_at, step.actor, f"Drawn into {ev.kind} {tid}")
    if ev.output is not None:
        new_lot(ctx, ev.output)
    s, j = ctx.state, ctx.journal
    if tid not in s.transformations:
        found = rules.yield_exceeded(
            transformation_id=tid, kind=ev.kind, actor=by, inputs=ev.inputs, outputs=ev.outputs, t=ctx.thresholds
        )
        j.add(s.transformations, tid)
        j.set(ctx.changes.transformations, tid, ev.row)
        if ev.by_kind in ("smelter", "refiner"):
            smelting = Smelting(
                ev.event_id, intern(by), intern(ev.by_kind), ev.occurred_at, tuple(ev.output_ids), ev.recorded_at
            )
            j.set(s.smeltings, tid, smelting)
            if by not in s.smeltings_by_actor:
                j.set(s.smeltings_by_actor, by, [])
            j.append(s.smeltings_by_actor[by], tid)
        for parent in ev.input_ids:
            for child in ev.output_ids:
                j.set(ctx.changes.genealogy, (parent, child, tid), None)
        ctx.find(found)
    if ev.output is not None:  # all outputs exist once their events arrived; judging again is harmless
        screening.smelter(ctx, tid)
