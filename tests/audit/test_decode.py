"""`audit/projection/decode.py` without I/O: each event's data into a typed record, checked before any effect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from audit.projection import decode
from shared.events import CloudEvent

AT = datetime(2026, 11, 2, 8, tzinfo=UTC)


def event(type: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(type=type, source="/custody", subject="L1", key="L1", data=data, time=AT)


SHIPPED = {
    "lot_id": "L1",
    "shipment_id": "S1",
    "from": "mine",
    "to": "trader",
    "mass_kg": "100.0004",
    "seal": "S-1",
    "occurred_at": "2026-11-02T10:00:00+02:00",
    "actor": "mine",
    "transit_countries": ["RW"],
    "max_transit_days": 14,
}


def test_a_shipment_is_typed_with_its_mass_to_the_gram_and_its_time_in_utc() -> None:
    s = decode.shipped(event("custody.lot.shipped", SHIPPED))
    assert s.mass_kg == Decimal("100.000")
    assert s.shipped_at == AT and s.shipped_at.tzinfo is UTC
    assert s.sent == datetime(2026, 11, 2, 10, tzinfo=timezone(timedelta(hours=2)))  # as sent
    assert s.row[:4] == ("S1", "L1", "mine", "trader") and s.row[9] == "in_transit"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"to": None}, KeyError),  # removed below: a shipment without its addressee
        ({"occurred_at": None}, ValueError),
        ({"max_transit_days": "14"}, TypeError),
        ({"transit_countries": [1]}, TypeError),
        ({"mass_kg": "1e16"}, ArithmeticError),
        ({"occurred_at": "2026-11-02T10:00:00"}, ValueError),  # no time zone
    ],
)
def test_a_shipment_that_cannot_be_applied_fails_in_decoding(change: dict[str, Any], error: type) -> None:
    data = {**SHIPPED, **change}
    if change == {"to": None}:
        del data["to"]
    with pytest.raises(error):
        decode.shipped(event("custody.lot.shipped", data))


def test_only_a_refusal_for_drawing_too_much_asks_anything_of_the_projection() -> None:
    base = {"actor": "trader", "action": "ship", "detail": "only 3 kg remain", "subject": "L1"}
    assert decode.rejected(event("custody.attempt.rejected", {**base, "reason": "not_custodian"})) is None
    r = decode.rejected(event("custody.attempt.rejected", {**base, "reason": "exceeds_remaining"}))
    assert r is not None and (r.lot_id, r.actor, r.action) == ("L1", "trader", "ship")


def test_an_origin_lot_names_its_mine() -> None:
    data = {
        "lot_id": "L1",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": "5",
        "custodian": "mine",
        "occurred_at": "2026-12-31T23:30:00-01:00",
        "origin": {"participant_id": "mine", "country": "CD", "region": "CD-SK", "mining_type": "asm"},
    }
    r = decode.registered(event("custody.lot.registered", data))
    assert r.mine == "mine" and r.lot.origin_region == "CD-SK"
    assert r.year == 2026 and r.lot.at.year == 2027  # the mine's own year for its capacity; UTC for the table
    with pytest.raises(TypeError):
        decode.registered(event("custody.lot.registered", {**data, "origin": {"participant_id": None}}))


def test_a_certification_needs_a_status_or_a_level() -> None:
    data = {"id": "C1", "participant_id": "p", "scheme": "irma", "valid_from": "2026-01-01", "level": "IRMA 50"}
    assert decode.certification(event("registry.certification.changed", data)).value == "IRMA 50"
    with pytest.raises(ValueError, match="status or level"):
        decode.certification(event("registry.certification.changed", {**data, "level": None}))


def test_a_transformation_event_is_an_input_or_makes_an_output() -> None:
    data = {
        "transformation_id": "T1",
        "kind": "smelting",
        "by": "smelter",
        "by_kind": "smelter",
        "occurred_at": "2026-11-10T08:00:00Z",
        "inputs": [{"lot_id": "L1", "mineral": "tin", "form": "ore", "mass_kg": "10"}],
        "outputs": [{"lot_id": "M1", "mineral": "tin", "form": "metal", "mass_kg": "7"}],
        "lot_id": "M1",
        "role": "output",
    }
    out = decode.transformed(event("custody.lot.transformed", data))
    assert out.step is None and out.output is not None and out.output.form == "metal"
    assert out.record is not None and (out.record.input_ids, out.record.output_ids) == (["L1"], ["M1"])  # version 1
    inp = decode.transformed(event("custody.lot.transformed", {**data, "lot_id": "L1", "role": "input", "actor": "s"}))
    assert inp.output is None and inp.step is not None and inp.step.lot_id == "L1"
    with pytest.raises(StopIteration):  # an output event for a lot the transformation did not make
        decode.transformed(event("custody.lot.transformed", {**data, "lot_id": "X9"}))
