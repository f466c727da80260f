"""A transformation's yield rule is judged on its own, as a receipt's rules are (tests/audit/test_judging.py): should
it raise, the transformation is kept all the same (its row, its lots, the smelter's record) and an
`unjudgeable_event` flag names the transformation's event, its actor and the rule (issue 22, section 2)."""

from __future__ import annotations

from typing import Any

import pytest

from audit import rules
from audit.projection import decode
from audit.projection.context import Context
from audit.projection.handlers import transformations
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.rules import Rule, Thresholds
from custody.unit_of_work import custody_event
from tests.audit.test_transformation_projection import SMELTER, transformation

INPUTS, OUTPUTS = ["IN-1", "IN-2"], ["OUT-1", "OUT-2"]


def judged(out_kg: str = "9.000", **change: Any) -> tuple[Context, Any]:
    """A transformation (2 x 10 kg in, 2 outputs of `out_kg`) recorded by the projection; `change`: fields of its
    recorded event replaced."""
    recorded = transformation("TRF-1", INPUTS, OUTPUTS, out_kg)[0]
    event = custody_event(recorded.type, recorded.key, {**recorded.data, **change})
    ev = decode.recorded(event)
    ctx = Context(State(), Thresholds(), Journal())
    transformations.on_recorded(ctx, ev)
    return ctx, ev


def kept(ctx: Context) -> None:
    """The transformation's state change applied: its row, its n + m lots, the smelter's record."""
    c, s = ctx.changes, ctx.state
    assert "TRF-1" in s.transformations and "TRF-1" in c.transformations
    assert set(c.transformation_inputs) == {("TRF-1", i) for i in INPUTS}
    assert set(c.transformation_outputs) == {("TRF-1", o) for o in OUTPUTS}
    assert "TRF-1" in s.smeltings and s.smeltings_by_actor[SMELTER] == ["TRF-1"]


def test_a_yield_rule_that_raises_leaves_the_transformation_and_flags_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("the yield rule broke")

    monkeypatch.setattr(rules, "yield_exceeded", broken)
    ctx, ev = judged()
    kept(ctx)
    found = {(str(f.rule), f.cause): f for f in ctx.changes.findings.values()}
    unjudged = found[("unjudgeable_event", f"{ev.event_id}:yield_exceeded")]
    assert unjudged.rule is Rule.unjudgeable_event and unjudged.participants == (SMELTER,)
    assert unjudged.lot_id == OUTPUTS[0] and "yield_exceeded" in unjudged.summary
    assert unjudged.evidence["error"] == "RuntimeError: the yield rule broke"
    assert unjudged.evidence["type"] == "custody.transformation.recorded"


def test_a_mass_the_rule_cannot_read_is_flagged_not_the_events_end() -> None:
    """An input whose mass is no number (as an old or odd event on the topic may carry): Decimal raises inside the
    rule; before, the exception undid the whole transformation."""
    recorded = transformation("TRF-1", INPUTS, OUTPUTS, "9.000")[0]
    inputs = [{**recorded.data["inputs"][0], "mass_kg": "ten"}, recorded.data["inputs"][1]]
    ctx, ev = judged(inputs=inputs)
    kept(ctx)
    (f,) = [f for f in ctx.changes.findings.values() if f.rule is not Rule.smelter_not_rmap_conformant]
    assert (
        f.rule is Rule.unjudgeable_event
        and f.cause == f"{ev.event_id}:yield_exceeded"
        and "InvalidOperation" in f.evidence["error"]
    )


def test_a_yield_the_rule_can_judge_is_judged_as_before() -> None:
    ctx, _ = judged(out_kg="15.000")  # 30 kg out of 20 kg in: more than any yield
    (f,) = [f for f in ctx.changes.findings.values() if f.rule is not Rule.smelter_not_rmap_conformant]
    assert f.rule is Rule.yield_exceeded and f.cause == "TRF-1:tin" and f.lot_id == OUTPUTS[0]
    kept(ctx)
