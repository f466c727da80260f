"""Transformations (smelting, refining, alloying, splitting, merging...): the transformation and its lots (stored
once, n + m rows), the output lots, the yield rule, and the smelter's RMAP status.

A transformation comes once with both of its lists (`custody.transformation.recorded`), and each of its lots has
an event of its own (`custody.lot.transformed`, version 2) that refers to it by id; they may arrive in any order
(they are keyed differently). Streams from before 2026-12-05 carry version 1 lot events instead, each with both
lists: the first of them to arrive records the transformation the same way.

Whoever transforms ore or concentrate into metal, or records a smelting or refining, is screened as a smelter or
refiner (`rules.smelts`), not only a participant registered as one: a trader or recycler that smelts gets the RMAP
check too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from audit import rules
from audit.projection import screening
from audit.projection.context import About, Context
from audit.projection.decode import TransformationRecord, Transformed, intern
from audit.projection.handlers.lots import check_time, new_lot
from audit.projection.state import Smelting


def record(ctx: Context, ev: TransformationRecord) -> bool:
    """The transformation, its lots (a row per input and per output) and the yield rule, the first time it is seen;
    returns whether it was new. The yield rule is judged on its own (`Context.judge`): should it raise, an
    `unjudgeable_event` flag names the transformation's event and its actor, and the transformation is kept all the
    same."""
    s, j, c = ctx.state, ctx.journal, ctx.changes
    tid, by = ev.transformation_id, ev.by
    if tid in s.transformations:
        return False
    lot_id = ev.output_ids[0] if ev.output_ids else ev.input_ids[0] if ev.input_ids else tid
    ctx.judge(
        "yield_exceeded",
        About(lot_id, ev.event_id, "custody.transformation.recorded", by),
        lambda: rules.yield_exceeded(
            transformation_id=tid, kind=ev.kind, actor=by, inputs=ev.inputs, outputs=ev.outputs, t=ctx.thresholds
        ),
    )
    j.add(s.transformations, tid)
    j.set(c.transformations, tid, ev.row)
    input_forms, output_forms = smelting_forms(ev)
    if rules.smelts(ev.kind, ev.by_kind, input_forms, output_forms):
        smelting = Smelting(
            ev.event_id,
            intern(by),
            intern(ev.by_kind),
            ev.occurred_at,
            tuple(ev.output_ids),
            ev.recorded_at,
            intern(ev.kind),
            input_forms,
            output_forms,
        )
        j.set(s.smeltings, tid, smelting)
        if by not in s.smeltings_by_actor:
            j.set(s.smeltings_by_actor, by, [])
        j.append(s.smeltings_by_actor[by], tid)
    masses = ev.input_masses or [None] * len(ev.input_ids)
    for position, (lot_id, mass) in enumerate(zip(ev.input_ids, masses, strict=True)):
        j.set(c.transformation_inputs, (tid, lot_id), (position, mass))
    for position, lot_id in enumerate(ev.output_ids):
        j.set(c.transformation_outputs, (tid, lot_id), position)
    return True


def smelting_forms(ev: TransformationRecord) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The distinct forms of the inputs and of the outputs (sorted), when `rules.smelts` needs them: neither the
    actor's kind nor the transformation's decides. Else none, as `statements.load_state` reads them back."""
    if ev.by_kind in rules.SMELTER_KINDS or ev.kind in rules.SMELTING_KINDS:
        return (), ()
    return _forms(ev.inputs), _forms(ev.outputs)


def _forms(lots: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(sorted({intern(f) for lot in lots if isinstance(f := lot.get("form"), str)}))


def on_recorded(ctx: Context, ev: TransformationRecord) -> None:
    record(ctx, ev)
    screening.smelter(ctx, ev.transformation_id)


def on_transformed(ctx: Context, ev: Transformed) -> None:
    tid = ev.transformation_id
    if ev.step is not None:
        step = ev.step
        check_time(ctx, step.lot_id, step.event_id, step.occurred_at, step.actor, f"Drawn into {ev.kind} {tid}")
    if ev.output is not None:
        new_lot(ctx, ev.output)
    if ev.record is not None:  # version 1: the lists came with this lot's event
        record(ctx, ev.record)
    if ev.output is not None:  # all outputs exist once their events arrived; judging again is harmless
        screening.smelter(ctx, tid)
