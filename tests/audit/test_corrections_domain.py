"""What audit makes of a custody correction, pure: which flags it grounds, the `record_corrected` finding, the
decoding of `custody.event.corrected`, and the state with a voided shipment taken out (docs/corrections.md)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from audit.corrections_domain import Correction, grounds, marked, record_corrected, remember, summary_note
from audit.corrections_projection import decode, has_corrections, on_corrected
from audit.projection.context import Context
from audit.projection.journal import Journal
from audit.projection.state import State, Transit
from audit.rules import Finding, Rule, Severity, Thresholds
from shared.events import CloudEvent

AT = datetime(2026, 11, 21, 9, 12, tzinfo=UTC)


def correction(**kw: Any) -> Correction:
    fields: dict[str, Any] = {
        "correction_id": "C-1",
        "lot_id": "L-1",
        "event_id": "E-1",
        "corrected_type": "custody.lot.shipped",
        "reason": "did_not_occur",
        "note": "never left",
        "declared_by": "mine",
        "declared_at": AT,
        "effect": "voided_shipment",
        "shipment_id": "SHP-1",
        "corrective_event_ids": (),
        **kw,
    }
    return Correction(**fields)


def flag(cause: str, **evidence: Any) -> dict[str, Any]:
    return {"id": "F", "rule": "seal_mismatch", "cause": cause, "severity": "high", "evidence": evidence}


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (flag("E-1"), True),  # the event is the cause
        (flag("E-1:data.mass_kg"), True),  # an unjudgeable_event's `<event>:<what>`
        (flag("L-1:first_shipment", event_id="E-1"), True),  # the evidence's event
        (flag("SHP-1"), True),  # transit_overdue: the shipment is the cause
        (flag("E-9", shipment_id="SHP-1"), True),  # the receipt of the corrected shipment
        (flag("E-9", event_id="E-9"), False),
        (flag("E-10"), False),  # another event whose id starts the same is not it
        (flag("L-1", shipment_id="SHP-2"), False),
    ],
)
def test_the_flags_a_correction_grounds(f: dict[str, Any], expected: bool) -> None:
    assert grounds(f, correction()) is expected


def test_a_correction_without_a_shipment_grounds_by_its_event_only() -> None:
    c = correction(corrected_type="custody.lot.registered", shipment_id=None, effect="recorded")
    assert grounds(flag("E-1"), c)
    assert not grounds(flag("SHP-1", shipment_id=None), c)


def test_a_correction_of_a_serious_flags_grounds_is_a_finding_of_its_own() -> None:
    assert record_corrected(correction(), []) is None
    serious = [{"id": "F2", "rule": "tag_mismatch", "severity": "critical"}, {"id": "F1", "rule": "seal_mismatch"}]
    f = record_corrected(correction(), serious)
    assert f is not None
    assert (f.rule, f.cause, f.lot_id, f.level, f.participants) == (
        Rule("record_corrected"),
        "C-1",
        "L-1",
        Severity.high,
        ("mine",),
    )
    assert [x["id"] for x in f.evidence["flags"]] == ["F1", "F2"]
    assert f.evidence["correction"]["note"] == "never left"
    assert f.evidence["correction"]["declared_at"] == AT.isoformat()
    assert "seal_mismatch, tag_mismatch" in f.summary


def test_the_summary_says_a_person_reviews() -> None:
    assert summary_note("incorrect_data") == " [grounds corrected by the party (incorrect_data); review]"


def event(**data: Any) -> CloudEvent:
    body = {
        "corrected_event_id": "E-1",
        "corrected_type": "custody.lot.shipped",
        "reason": "did_not_occur",
        "note": "never left",
        "corrective_event_ids": [],
        "effect": "voided_shipment",
        "shipment_id": "SHP-1",
        "lot_status": "active",
        "lot_id": "L-1",
        "actor": "mine",
        "occurred_at": "2026-11-21T09:12:00+00:00",
        **data,
    }
    return CloudEvent(
        type="custody.event.corrected",
        source="/custody",
        subject="L-1",
        key="L-1",
        data=body,
        id=str(uuid.uuid4()),
        time=AT,
    )


def test_a_correcting_event_decodes_into_what_audit_keeps() -> None:
    e = event()
    c = decode(e)
    assert (c.correction_id, c.event_id, c.voids, c.declared_by, c.declared_at) == (e.id, "E-1", "SHP-1", "mine", AT)
    assert has_corrections([e]) and not has_corrections([])


@pytest.mark.parametrize(
    "bad",
    [{"reason": "oops"}, {"effect": "erased"}, {"note": ""}, {"corrective_event_ids": [1]}, {"occurred_at": None}],
)
def test_a_correcting_event_that_cannot_be_read_is_refused_by_its_decoder(bad: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        decode(event(**bad))


def test_a_voided_shipment_is_no_longer_open_nor_re_screened_and_the_journal_takes_it_back() -> None:
    state, journal = State(), Journal()
    state.open_shipments.add("SHP-1")
    state.transits["SHP-1"] = Transit("L-1", "E-1", ("CD",), AT, "mine", "trader")
    ctx = Context(state, Thresholds(), journal)
    mark = journal.mark()
    on_corrected(ctx, decode(event()))
    assert "SHP-1" not in state.open_shipments and "SHP-1" not in state.transits
    assert list(ctx.changes.corrections) and not ctx.changes.findings  # a correction closes nothing by itself
    journal.undo(mark)
    assert "SHP-1" in state.open_shipments and "SHP-1" in state.transits
    assert not ctx.changes.corrections


def test_a_correction_that_only_records_changes_no_state() -> None:
    state, journal = State(), Journal()
    state.open_shipments.add("SHP-1")
    ctx = Context(state, Thresholds(), journal)
    on_corrected(ctx, decode(event(reason="incorrect_data", effect="recorded")))
    assert state.open_shipments == {"SHP-1"}


def test_a_finding_raised_after_a_correction_of_its_grounds_shows_the_first_declared_one() -> None:
    first = correction()
    later = correction(correction_id="C-2", event_id="E-2", corrected_type="custody.lot.received", effect="recorded")
    later = replace(later, declared_at=datetime(2026, 11, 22, tzinfo=UTC))
    by_event: dict[str, Correction] = {}
    by_shipment: dict[str, Correction] = {}
    for c in (first, later):
        remember(by_event, by_shipment, c)
    overdue = Finding(Rule.transit_overdue, "L-1", "SHP-1", "Shipped, not received", {"shipment_id": "SHP-1"})
    f = marked(overdue, by_event, by_shipment)
    assert f.evidence["correction"]["correction_id"] == "C-1"
    assert f.summary == "Shipped, not received [grounds corrected by the party (did_not_occur); review]"
    receipt = Finding(Rule.mass_mismatch, "L-1", "E-2", "Received 2 kg less", {"event_id": "E-2"})
    assert marked(receipt, {"E-2": later}, {}).evidence["correction"]["correction_id"] == "C-2"
    other = Finding(Rule.mass_mismatch, "L-9", "E-9", "x", {"event_id": "E-9", "shipment_id": "SHP-9"})
    assert marked(other, by_event, by_shipment) is other
    assert marked(f, by_event, by_shipment) is f  # marked once


def test_the_handler_remembers_a_correction_for_the_findings_after_it_and_takes_it_back() -> None:
    state, journal = State(), Journal()
    ctx = Context(state, Thresholds(), journal)
    mark = journal.mark()
    on_corrected(ctx, decode(event(reason="incorrect_data", effect="recorded")))
    ctx.find([Finding(Rule.transit_overdue, "L-1", "SHP-1", "late", {"shipment_id": "SHP-1"})])
    (found,) = ctx.changes.findings.values()
    assert found.evidence["correction"]["event_id"] == "E-1"
    journal.undo(mark)
    assert not state.corrected and not state.corrected_shipments and not ctx.changes.findings
