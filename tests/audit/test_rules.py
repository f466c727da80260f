"""Unit tests for the audit rules (`audit.rules`): pure functions, no I/O.

One group per rule. Each group checks when the rule fires and when it does not (boundaries included), the
finding's rule / lot / cause / participants / level, and the evidence that names what triggered it. Causes must be
stable: the projection keeps one flag per (rule, cause), so the same inputs must always give the same cause.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from audit import rules
from audit.rules import (
    CERTIFIED_ASM,
    RULE_SEVERITY,
    Area,
    Cert,
    Finding,
    Rule,
    Severity,
    Thresholds,
    beyond_remaining,
    capacity_exceeded,
    held,
    listed,
    origin_findings,
    receipt_findings,
    smelter_findings,
    time_contradiction,
    transit_findings,
    transit_overdue,
    yield_exceeded,
)

T = Thresholds()
SHIPPED_AT = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def kg(value: str) -> Decimal:
    return Decimal(value)


def rules_of(findings: list[Finding]) -> list[Rule]:
    return sorted(f.rule for f in findings)


def only(findings: list[Finding], rule: Rule) -> Finding:
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


# --- the finding model and the severity table ------------------------------------------------------------------


def test_every_rule_has_a_default_severity() -> None:
    assert set(RULE_SEVERITY) == set(Rule)


def test_level_defaults_to_the_rules_severity_and_can_be_overridden() -> None:
    f = Finding(Rule.seal_mismatch, "L1", "S1", "x", {})
    assert f.level is Severity.high
    assert Finding(Rule.seal_mismatch, "L1", "S1", "x", {}, severity=Severity.low).level is Severity.low


def test_lot_ids_lists_the_lot_then_the_others() -> None:
    f = Finding(Rule.yield_exceeded, "L1", "T1:tin", "x", {}, also=("L2", "L3"))
    assert f.lot_ids == ("L1", "L2", "L3")
    assert Finding(Rule.yield_exceeded, "L1", "T1:tin", "x", {}).lot_ids == ("L1",)


def test_severity_order_runs_from_info_to_critical() -> None:
    from audit.rules import SEVERITY_ORDER

    assert sorted(Severity, key=SEVERITY_ORDER.__getitem__) == [
        Severity.info,
        Severity.low,
        Severity.medium,
        Severity.high,
        Severity.critical,
    ]


# --- receipt: mass, seal, time -------------------------------------------------------------------------------


def receive(**overrides: Any) -> list[Finding]:
    args: dict[str, Any] = {
        "lot_id": "L1",
        "shipment_id": "S1",
        "event_id": "E1",
        "shipped_kg": kg("1000.000"),
        "received_kg": kg("1000.000"),
        "shipped_seal": "SEAL-1",
        "received_seal": "SEAL-1",
        "shipped_at": SHIPPED_AT,
        "received_at": SHIPPED_AT + timedelta(days=4),
        "sender": "trader-1",
        "receiver": "smelter-1",
        "t": T,
    }
    args.update(overrides)
    return receipt_findings(**args)


def test_clean_receipt_raises_nothing() -> None:
    assert receive() == []


@pytest.mark.parametrize(
    "received",
    [
        "1000.000",  # same
        "999.000",  # below the tolerance, lighter
        "1004.999",  # below the tolerance, heavier
        "995.000",  # exactly at the limit (0.5 % of 1000 kg = 5 kg), lighter
        "1005.000",  # exactly at the limit, heavier
    ],
)
def test_mass_within_tolerance_is_not_flagged(received: str) -> None:
    assert receive(received_kg=kg(received)) == []


@pytest.mark.parametrize(
    ("received", "difference"),
    [
        ("994.999", "-5.001"),  # one gram short of the limit
        ("1005.001", "5.001"),  # one gram heavier than the limit
        ("1200.000", "200.000"),  # received much heavier than shipped
        ("0.000", "-1000.000"),
    ],
)
def test_mass_beyond_tolerance_is_flagged_with_its_evidence(received: str, difference: str) -> None:
    findings = receive(received_kg=kg(received))
    assert rules_of(findings) == [Rule.mass_mismatch]
    f = findings[0]
    assert (f.lot_id, f.cause, f.also) == ("L1", "S1", ())
    assert f.participants == ("trader-1", "smelter-1")
    assert f.level is Severity.medium
    assert f.evidence["event_id"] == "E1"
    assert f.evidence["shipment_id"] == "S1"
    assert kg(f.evidence["shipped_kg"]) == kg("1000")
    assert kg(f.evidence["received_kg"]) == kg(received)
    assert kg(f.evidence["difference_kg"]) == kg(difference)
    assert kg(f.evidence["tolerance_kg"]) == kg("5")


def test_mass_tolerance_scales_with_the_shipped_mass() -> None:
    # 0.5 % of 200 kg = 1 kg
    assert receive(shipped_kg=kg("200.000"), received_kg=kg("201.000")) == []
    assert receive(shipped_kg=kg("200.000"), received_kg=kg("199.000")) == []
    assert rules_of(receive(shipped_kg=kg("200.000"), received_kg=kg("201.001"))) == [Rule.mass_mismatch]
    assert rules_of(receive(shipped_kg=kg("200.000"), received_kg=kg("198.999"))) == [Rule.mass_mismatch]


def test_mass_tolerance_comes_from_the_thresholds() -> None:
    loose = Thresholds(mass_tolerance=Decimal("0.02"))  # 20 kg on 1000 kg
    assert receive(received_kg=kg("980.000"), t=loose) == []
    f = only(receive(received_kg=kg("979.999"), t=loose), Rule.mass_mismatch)
    assert kg(f.evidence["tolerance_kg"]) == kg("20")


@pytest.mark.parametrize(("shipped", "received"), [("SEAL-1", "SEAL-1"), (None, None), ("", ""), (None, "")])
def test_same_or_both_missing_seals_are_not_flagged(shipped: str | None, received: str | None) -> None:
    assert receive(shipped_seal=shipped, received_seal=received) == []


@pytest.mark.parametrize(
    ("shipped", "received"),
    [
        ("SEAL-1", "SEAL-2"),  # differs
        ("SEAL-1", None),  # missing on arrival
        (None, "SEAL-2"),  # appeared on arrival
    ],
)
def test_changed_or_one_missing_seal_is_flagged(shipped: str | None, received: str | None) -> None:
    findings = receive(shipped_seal=shipped, received_seal=received)
    assert rules_of(findings) == [Rule.seal_mismatch]
    f = findings[0]
    assert (f.lot_id, f.cause) == ("L1", "S1")
    assert f.level is Severity.high
    assert f.participants == ("trader-1", "smelter-1")
    assert f.evidence == {
        "event_id": "E1",
        "shipment_id": "S1",
        "shipped_seal": shipped,
        "received_seal": received,
    }


def test_received_before_shipped_is_a_time_contradiction() -> None:
    received_at = SHIPPED_AT - timedelta(hours=2)
    findings = receive(received_at=received_at)
    assert rules_of(findings) == [Rule.time_contradiction]
    f = findings[0]
    assert (f.lot_id, f.cause) == ("L1", "S1:received")
    assert f.level is Severity.medium
    assert f.participants == ("trader-1", "smelter-1")
    assert f.evidence == {
        "event_id": "E1",
        "shipment_id": "S1",
        "shipped_at": SHIPPED_AT.isoformat(),
        "received_at": received_at.isoformat(),
    }


def test_received_one_microsecond_before_shipped_is_flagged_and_same_instant_is_not() -> None:
    assert rules_of(receive(received_at=SHIPPED_AT - timedelta(microseconds=1))) == [Rule.time_contradiction]
    assert receive(received_at=SHIPPED_AT) == []


def test_one_receipt_can_break_mass_seal_and_time_at_once_with_distinct_causes() -> None:
    findings = receive(received_kg=kg("900"), received_seal="OTHER", received_at=SHIPPED_AT - timedelta(days=1))
    assert rules_of(findings) == sorted([Rule.mass_mismatch, Rule.seal_mismatch, Rule.time_contradiction])
    # mass and seal share the shipment as cause, but under different rules; the time contradiction has its own.
    assert len({(f.rule, f.cause) for f in findings}) == 3
    assert all(f.lot_id == "L1" for f in findings)


def test_receipt_findings_are_stable() -> None:
    kwargs: dict[str, Any] = {
        "received_kg": kg("900"),
        "received_seal": "OTHER",
        "received_at": SHIPPED_AT - timedelta(days=1),
    }
    assert receive(**kwargs) == receive(**kwargs)


# --- transit overdue -----------------------------------------------------------------------------------------


def overdue(now: datetime, max_transit_days: int | None, t: Thresholds = T) -> Finding | None:
    return transit_overdue(
        lot_id="L1",
        shipment_id="S1",
        shipped_at=SHIPPED_AT,
        max_transit_days=max_transit_days,
        now=now,
        sender="trader-1",
        receiver="smelter-1",
        t=t,
    )


def test_transit_with_max_days_not_overdue_until_the_due_time() -> None:
    due = SHIPPED_AT + timedelta(days=10)
    assert overdue(SHIPPED_AT, 10) is None
    assert overdue(due - timedelta(seconds=1), 10) is None
    assert overdue(due, 10) is None  # due time itself is still in time


def test_transit_with_max_days_overdue_just_after_the_due_time() -> None:
    due = SHIPPED_AT + timedelta(days=10)
    f = overdue(due + timedelta(seconds=1), 10)
    assert f is not None
    assert f.rule is Rule.transit_overdue
    assert (f.lot_id, f.cause) == ("L1", "S1")
    assert f.level is Severity.medium
    assert f.participants == ("trader-1", "smelter-1")
    assert f.evidence == {
        "shipment_id": "S1",
        "shipped_at": SHIPPED_AT.isoformat(),
        "due": due.isoformat(),
        "max_transit_days": 10,
    }


def test_transit_without_max_days_uses_the_default() -> None:
    assert T.default_transit_days == 30
    due = SHIPPED_AT + timedelta(days=T.default_transit_days)
    # a shipment with no max would be overdue at 10 days if anything but the default applied
    assert overdue(SHIPPED_AT + timedelta(days=10, seconds=1), None) is None
    assert overdue(due - timedelta(seconds=1), None) is None
    assert overdue(due, None) is None
    f = overdue(due + timedelta(seconds=1), None)
    assert f is not None
    assert f.evidence["max_transit_days"] == 30
    assert f.evidence["due"] == due.isoformat()


def test_transit_default_comes_from_the_thresholds() -> None:
    short = Thresholds(default_transit_days=5)
    due = SHIPPED_AT + timedelta(days=5)
    assert overdue(due, None, short) is None
    f = overdue(due + timedelta(seconds=1), None, short)
    assert f is not None
    assert f.evidence["max_transit_days"] == 5


def test_transit_max_days_longer_than_the_default_wins() -> None:
    assert overdue(SHIPPED_AT + timedelta(days=45), 60) is None
    assert overdue(SHIPPED_AT + timedelta(days=60, seconds=1), 60) is not None


def test_transit_overdue_cause_is_stable_whenever_it_is_checked() -> None:
    a = overdue(SHIPPED_AT + timedelta(days=11), 10)
    b = overdue(SHIPPED_AT + timedelta(days=40), 10)
    assert a is not None and b is not None
    assert (a.rule, a.cause) == (b.rule, b.cause)
    assert a == b  # the evidence does not depend on when the check ran


# --- time contradiction (consumed/transformed before received) -----------------------------------------------

RECEIVED_AT = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)


def contradiction(at: datetime, after_at: datetime | None) -> Finding | None:
    return time_contradiction(
        lot_id="L1",
        event_id="E9",
        what="Consumed",
        at=at,
        after="received",
        after_at=after_at,
        actor="maker-1",
    )


def test_consumed_before_received_is_flagged() -> None:
    at = RECEIVED_AT - timedelta(minutes=1)
    f = contradiction(at, RECEIVED_AT)
    assert f is not None
    assert f.rule is Rule.time_contradiction
    assert (f.lot_id, f.cause) == ("L1", "E9")
    assert f.participants == ("maker-1",)
    assert f.level is Severity.medium
    assert f.evidence == {
        "event_id": "E9",
        "at": at.isoformat(),
        "after": "received",
        "after_at": RECEIVED_AT.isoformat(),
    }


@pytest.mark.parametrize(
    "at",
    [RECEIVED_AT, RECEIVED_AT + timedelta(microseconds=1), RECEIVED_AT + timedelta(days=3)],
)
def test_consumed_at_or_after_received_is_fine(at: datetime) -> None:
    assert contradiction(at, RECEIVED_AT) is None


def test_no_earlier_event_means_no_contradiction() -> None:
    assert contradiction(RECEIVED_AT, None) is None


# --- yield ---------------------------------------------------------------------------------------------------


def lot(lot_id: str, mineral: str, mass: str, form: str = "ore") -> dict[str, Any]:
    return {"lot_id": lot_id, "mineral": mineral, "mass_kg": mass, "form": form}


def transform(
    kind: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], t: Thresholds = T
) -> list[Finding]:
    return yield_exceeded(transformation_id="T1", kind=kind, actor="smelter-1", inputs=inputs, outputs=outputs, t=t)


def test_smelting_tin_at_max_yield_is_fine() -> None:
    assert T.yield_for("tin") == Decimal("0.80")
    assert transform("smelting", [lot("I1", "tin", "1000.000")], [lot("O1", "tin", "800.000")]) == []
    assert transform("smelting", [lot("I1", "tin", "1000.000")], [lot("O1", "tin", "500.000")]) == []


def test_smelting_tin_one_gram_above_max_yield_is_flagged() -> None:
    findings = transform("smelting", [lot("I1", "tin", "1000.000")], [lot("O1", "tin", "800.001")])
    assert rules_of(findings) == [Rule.yield_exceeded]
    f = findings[0]
    assert (f.lot_id, f.also, f.cause) == ("O1", (), "T1:tin")
    assert f.participants == ("smelter-1",)
    assert f.level is Severity.high
    assert f.evidence["transformation_id"] == "T1"
    assert f.evidence["mineral"] == "tin"
    assert kg(f.evidence["inputs_kg"]) == kg("1000")
    assert kg(f.evidence["outputs_kg"]) == kg("800.001")
    assert kg(f.evidence["max_yield"]) == kg("0.80")


def test_yield_sums_all_inputs_and_outputs_of_the_mineral() -> None:
    inputs = [lot("I1", "tin", "600.000"), lot("I2", "tin", "400.000")]
    assert transform("smelting", inputs, [lot("O1", "tin", "500.000"), lot("O2", "tin", "300.000")]) == []
    findings = transform("smelting", inputs, [lot("O1", "tin", "500.000"), lot("O2", "tin", "300.001")])
    f = only(findings, Rule.yield_exceeded)
    assert kg(f.evidence["inputs_kg"]) == kg("1000")
    assert kg(f.evidence["outputs_kg"]) == kg("800.001")


def test_one_flag_per_mineral_names_all_its_output_lots() -> None:
    outputs = [lot("O1", "tin", "300.000"), lot("O2", "tin", "300.000"), lot("O3", "tin", "300.000")]
    findings = transform("smelting", [lot("I1", "tin", "1000.000")], outputs)
    assert len(findings) == 1
    f = findings[0]
    assert f.lot_id == "O1"
    assert f.also == ("O2", "O3")
    assert f.lot_ids == ("O1", "O2", "O3")
    assert f.cause == "T1:tin"


@pytest.mark.parametrize("kind", ["split", "merge"])
def test_split_and_merge_use_factor_one(kind: str) -> None:
    inputs = [lot("I1", "tin", "600.000"), lot("I2", "tin", "400.000")]
    # 1000 kg out of 1000 kg in would exceed tin's 0.80 if it applied
    assert transform(kind, inputs, [lot("O1", "tin", "700.000"), lot("O2", "tin", "300.000")]) == []
    findings = transform(kind, inputs, [lot("O1", "tin", "700.000"), lot("O2", "tin", "300.001")])
    f = only(findings, Rule.yield_exceeded)
    assert kg(f.evidence["max_yield"]) == kg("1")
    assert f.lot_ids == ("O1", "O2")


def test_several_minerals_are_judged_separately() -> None:
    inputs = [lot("I1", "tin", "1000.000"), lot("I2", "tantalum", "500.000")]
    ok = [lot("O1", "tin", "800.000"), lot("O2", "tantalum", "300.000")]  # tantalum max 0.60
    assert transform("smelting", inputs, ok) == []
    # tin would be fine against the combined 1500 kg in, but minerals are not pooled: only tantalum exceeds
    findings = transform("smelting", inputs, [lot("O1", "tin", "800.000"), lot("O2", "tantalum", "300.001")])
    f = only(findings, Rule.yield_exceeded)
    assert len(findings) == 1
    assert (f.lot_id, f.also, f.cause) == ("O2", (), "T1:tantalum")
    assert kg(f.evidence["inputs_kg"]) == kg("500")
    assert kg(f.evidence["max_yield"]) == kg("0.60")


def test_several_minerals_exceeded_give_one_flag_each() -> None:
    inputs = [lot("I1", "tin", "1000.000"), lot("I2", "tantalum", "500.000")]
    outputs = [
        lot("O1", "tin", "500.000"),
        lot("O2", "tantalum", "400.000"),
        lot("O3", "tin", "500.000"),
        lot("O4", "tantalum", "1.000"),
    ]
    findings = transform("smelting", inputs, outputs)
    by_cause = {f.cause: f for f in findings}
    assert len(findings) == 2
    assert set(by_cause) == {"T1:tin", "T1:tantalum"}
    assert by_cause["T1:tin"].lot_ids == ("O1", "O3")
    assert by_cause["T1:tantalum"].lot_ids == ("O2", "O4")


def test_output_mineral_without_any_input_is_flagged() -> None:
    findings = transform("smelting", [lot("I1", "tin", "1000.000")], [lot("O1", "tungsten", "0.001")])
    f = only(findings, Rule.yield_exceeded)
    assert f.cause == "T1:tungsten"
    assert kg(f.evidence["inputs_kg"]) == 0


def test_inputs_of_other_minerals_do_not_count() -> None:
    assert transform("smelting", [lot("I1", "tin", "1000.000")], []) == []


def test_unknown_mineral_uses_the_default_max_yield() -> None:
    assert T.yield_for("unobtainium") == T.default_max_yield == Decimal("1.00")
    assert transform("processing", [lot("I1", "unobtainium", "10")], [lot("O1", "unobtainium", "10")]) == []
    assert transform("processing", [lot("I1", "unobtainium", "10")], [lot("O1", "unobtainium", "10.001")]) != []


def test_gold_refining_may_keep_all_its_mass() -> None:
    assert transform("refining", [lot("I1", "gold", "12.500")], [lot("O1", "gold", "12.500")]) == []


def test_yield_table_comes_from_the_thresholds() -> None:
    t = Thresholds(max_yield={"tin": Decimal("0.50")})
    assert transform("smelting", [lot("I1", "tin", "1000")], [lot("O1", "tin", "500")], t) == []
    f = only(transform("smelting", [lot("I1", "tin", "1000")], [lot("O1", "tin", "500.001")], t), Rule.yield_exceeded)
    assert kg(f.evidence["max_yield"]) == kg("0.50")


def test_masses_may_be_decimal_strings_or_decimals() -> None:
    inputs = [{"lot_id": "I1", "mineral": "tin", "mass_kg": Decimal("1000")}]
    assert transform("smelting", inputs, [{"lot_id": "O1", "mineral": "tin", "mass_kg": Decimal("800")}]) == []


def test_yield_findings_are_stable() -> None:
    inputs = [lot("I1", "tin", "1000"), lot("I2", "tantalum", "500")]
    outputs = [lot("O1", "tin", "900"), lot("O2", "tantalum", "400")]

    def key(f: Finding) -> str:
        return f.cause

    a = sorted(transform("smelting", inputs, outputs), key=key)
    b = sorted(transform("smelting", inputs, outputs), key=key)
    assert a == b
    assert [f.cause for f in a] == ["T1:tantalum", "T1:tin"]


@pytest.mark.parametrize("kind", ["alloying", "manufacturing"])
def test_metal_to_metal_steps_do_not_apply_the_ore_recovery_yield(kind: str) -> None:
    assert transform(kind, [lot("I1", "tin", "1000.000", "metal")], [lot("O1", "tin", "990.000", "alloy")]) == []
    # ... but metal cannot grow either
    assert [
        f.rule
        for f in transform(kind, [lot("I1", "tin", "1000.000", "metal")], [lot("O1", "tin", "1000.001", "alloy")])
    ] == [Rule.yield_exceeded]


# --- beyond remaining ----------------------------------------------------------------------------------------


def test_beyond_remaining_keeps_a_trace_of_the_attempt() -> None:
    f = beyond_remaining(lot_id="L1", event_id="E5", actor="maker-1", action="consume", detail="120 kg of 100 kg")
    assert f.rule is Rule.beyond_remaining
    assert (f.lot_id, f.cause) == ("L1", "E5")
    assert f.participants == ("maker-1",)
    assert f.level is Severity.low
    assert f.evidence == {"event_id": "E5", "action": "consume", "detail": "120 kg of 100 kg"}
    assert f == beyond_remaining(
        lot_id="L1", event_id="E5", actor="maker-1", action="consume", detail="120 kg of 100 kg"
    )


# --- capacity --------------------------------------------------------------------------------------------------


def capacity(declared: Decimal | None, registered: Decimal) -> Finding | None:
    return capacity_exceeded(
        mine="mine-1", lot_id="L7", mineral="tin", year=2025, declared_kg=declared, registered_kg=registered
    )


def test_capacity_under_or_equal_is_fine() -> None:
    assert capacity(kg("50000"), kg("49999.999")) is None
    assert capacity(kg("50000"), kg("50000")) is None


def test_capacity_over_is_flagged() -> None:
    f = capacity(kg("50000"), kg("50000.001"))
    assert f is not None
    assert f.rule is Rule.capacity_exceeded
    assert (f.lot_id, f.cause) == ("L7", "mine-1:tin:2025")
    assert f.participants == ("mine-1",)
    assert f.level is Severity.high
    assert f.evidence["mine"] == "mine-1"
    assert f.evidence["mineral"] == "tin"
    assert f.evidence["year"] == 2025
    assert kg(f.evidence["declared_kg"]) == kg("50000")
    assert kg(f.evidence["registered_kg"]) == kg("50000.001")


def test_no_declared_capacity_is_never_flagged() -> None:
    assert capacity(None, kg("99999999")) is None


def test_capacity_cause_is_per_mine_mineral_and_year() -> None:
    a = capacity(kg("100"), kg("150"))
    b = capacity_exceeded(
        mine="mine-1", lot_id="L8", mineral="tin", year=2025, declared_kg=kg("100"), registered_kg=kg("200")
    )
    c = capacity_exceeded(
        mine="mine-1", lot_id="L9", mineral="tin", year=2026, declared_kg=kg("100"), registered_kg=kg("200")
    )
    assert a is not None and b is not None and c is not None
    assert a.cause == b.cause  # later lots of the same year do not raise a second flag
    assert c.cause != a.cause


# --- CAHRA list as of a day ------------------------------------------------------------------------------------

CD = Area("A-CD", "CD", None, date(2020, 1, 1), None, "EU CAHRA list")
KACHIN = Area("A-MM-11", "MM", "MM-11", date(2021, 2, 1), date(2024, 12, 31), "RMI RRA")
AREAS = [CD, KACHIN]


@pytest.mark.parametrize("region", [None, "CD-NK", "CD-SK"])
def test_whole_country_listing_covers_every_region(region: str | None) -> None:
    assert listed(AREAS, "CD", region, date(2025, 1, 1)) is CD


def test_region_listing_covers_that_region_only() -> None:
    on = date(2023, 6, 1)
    assert listed(AREAS, "MM", "MM-11", on) is KACHIN
    assert listed(AREAS, "MM", "MM-12", on) is None  # another region of the same country
    assert listed(AREAS, "MM", None, on) is None  # a country-level place is not inside a region listing


def test_listing_effective_dates_are_inclusive() -> None:
    assert listed(AREAS, "MM", "MM-11", date(2021, 1, 31)) is None
    assert listed(AREAS, "MM", "MM-11", date(2021, 2, 1)) is KACHIN
    assert listed(AREAS, "MM", "MM-11", date(2024, 12, 31)) is KACHIN
    assert listed(AREAS, "MM", "MM-11", date(2025, 1, 1)) is None


def test_listing_without_end_stays_in_force() -> None:
    assert listed(AREAS, "CD", None, date(2019, 12, 31)) is None
    assert listed(AREAS, "CD", None, date(2020, 1, 1)) is CD
    assert listed(AREAS, "CD", None, date(2999, 12, 31)) is CD


def test_unlisted_or_unknown_country_is_not_listed() -> None:
    assert listed(AREAS, "RW", None, date(2025, 1, 1)) is None
    assert listed(AREAS, None, None, date(2025, 1, 1)) is None
    assert listed([], "CD", None, date(2025, 1, 1)) is None


# --- certifications as of a day --------------------------------------------------------------------------------


def test_held_finds_the_certification_covering_the_day_inclusively() -> None:
    c = Cert("rmap", "conformant", date(2024, 1, 1), date(2024, 12, 31), 1)
    assert held([c], "rmap", date(2023, 12, 31)) is None
    assert held([c], "rmap", date(2024, 1, 1)) is c
    assert held([c], "rmap", date(2024, 12, 31)) is c
    assert held([c], "rmap", date(2025, 1, 1)) is None


def test_held_open_ended_validity() -> None:
    c = Cert("irma", "irma_50", date(2024, 1, 1), None, 1)
    assert held([c], "irma", date(2999, 1, 1)) is c


def test_held_ignores_other_schemes() -> None:
    assert held([Cert("irma", "irma_75", date(2024, 1, 1), None, 1)], "rmap", date(2024, 6, 1)) is None
    assert held([], "rmap", date(2024, 6, 1)) is None


def test_held_latest_recorded_wins_among_overlapping() -> None:
    first = Cert("rmap", "conformant", date(2024, 1, 1), date(2026, 12, 31), 1)
    later = Cert("rmap", "suspended", date(2024, 6, 1), None, 2)
    for certs in ([first, later], [later, first]):  # order of the list does not matter, `seq` does
        assert held(certs, "rmap", date(2024, 5, 31)) is first  # the later one does not cover that day yet
        assert held(certs, "rmap", date(2024, 6, 1)) is later
        assert held(certs, "rmap", date(2025, 6, 1)) is later


def test_held_falls_back_to_an_earlier_record_when_the_latest_has_lapsed() -> None:
    long = Cert("rmap", "conformant", date(2020, 1, 1), None, 1)
    short = Cert("rmap", "active", date(2024, 1, 1), date(2024, 3, 31), 2)
    assert held([long, short], "rmap", date(2024, 2, 1)) is short
    assert held([long, short], "rmap", date(2024, 4, 1)) is long


# --- origin ----------------------------------------------------------------------------------------------------

ON = date(2025, 5, 10)
IRMA = Cert("irma", "irma_50", date(2020, 1, 1), date(2027, 12, 31), 1)


def origin(
    mining_type: str | None,
    certs: list[Cert] | None = None,
    country: str | None = "CD",
    region: str | None = "CD-SK",
    on: date = ON,
    lot_id: str = "L1",
    event_id: str = "E1",
) -> list[Finding]:
    return origin_findings(
        lot_id=lot_id,
        event_id=event_id,
        mine="mine-1",
        country=country,
        region=region,
        mining_type=mining_type,
        on=on,
        areas=AREAS,
        certs=certs or [],
    )


def test_lsm_in_cahra_is_origin_in_cahra() -> None:
    findings = origin("lsm", [IRMA])
    assert rules_of(findings) == [Rule.origin_in_cahra]
    f = findings[0]
    assert (f.lot_id, f.cause, f.also) == ("L1", "L1:origin", ())
    assert f.participants == ("mine-1",)
    assert f.level is Severity.high
    assert f.evidence == {
        "event_id": "E1",
        "mine": "mine-1",
        "country": "CD",
        "region": "CD-SK",
        "on": ON.isoformat(),
        "cahra_area": "A-CD",
        "cahra_source": "EU CAHRA list",
        "mining_type": "lsm",
        "irma_level": "irma_50",  # an industrial mine's origin finding names its IRMA level (issue 23)
    }


def test_lsm_in_cahra_without_irma_gets_both_flags() -> None:
    assert rules_of(origin("lsm")) == sorted([Rule.origin_in_cahra, Rule.lsm_without_irma])


def test_lsm_in_a_listed_region() -> None:
    f = only(origin("lsm", [IRMA], "MM", "MM-11", date(2023, 1, 1)), Rule.origin_in_cahra)
    assert f.evidence["cahra_area"] == "A-MM-11"
    assert f.evidence["region"] == "MM-11"


def test_lsm_in_another_region_of_a_region_listed_country_is_not_in_cahra() -> None:
    assert origin("lsm", [IRMA], "MM", "MM-12", date(2023, 1, 1)) == []


def test_uncertified_asm_in_cahra_is_critical_and_not_also_origin_in_cahra() -> None:
    findings = origin("asm")
    assert rules_of(findings) == [Rule.uncertified_asm_in_cahra]
    f = findings[0]
    assert (f.lot_id, f.cause) == ("L1", "L1:origin")
    assert f.level is Severity.critical
    assert f.participants == ("mine-1",)
    assert f.evidence["cahra_area"] == "A-CD"
    assert f.evidence["mining_type"] == "asm"
    assert f.evidence["event_id"] == "E1"


@pytest.mark.parametrize(
    ("scheme", "value"),
    [("fairmined", "certified"), ("craft", "progressing"), ("craft", "conformant"), ("itsci", "member")],
)
def test_certified_asm_in_cahra_gets_only_an_informational_note(scheme: str, value: str) -> None:
    cert = Cert(scheme, value, date(2025, 1, 1), date(2025, 12, 31), 1)
    findings = origin("asm", [cert])
    assert rules_of(findings) == [Rule.certified_asm_in_cahra]
    f = findings[0]
    assert f.level is Severity.info
    assert (f.lot_id, f.cause) == ("L1", "L1:origin")
    assert f.evidence["certification"] == f"{scheme}:{value}"
    assert f.evidence["cahra_area"] == "A-CD"


def test_certified_asm_sets_match_the_registry_vocabulary() -> None:
    from registry.domain import CERTIFIED_ASM as REGISTRY_CERTIFIED_ASM
    from registry.domain import SCHEME_VALUES

    assert {str(k): set(v) for k, v in REGISTRY_CERTIFIED_ASM.items()} == CERTIFIED_ASM
    allowed = {str(k): v for k, (_, v) in SCHEME_VALUES.items()}
    for scheme, values in CERTIFIED_ASM.items():
        assert values <= allowed[scheme]
    assert "conformant" in allowed["rmap"]  # the value smelter_findings looks for


@pytest.mark.parametrize(
    "cert",
    [
        Cert("fairmined", "withdrawn", date(2025, 1, 1), None, 1),
        Cert("craft", "suspended", date(2025, 1, 1), None, 1),
        Cert("itsci", "withdrawn", date(2025, 1, 1), None, 1),
        Cert("rmap", "conformant", date(2025, 1, 1), None, 1),  # not an ASM scheme
    ],
)
def test_asm_with_a_non_certifying_status_is_uncertified(cert: Cert) -> None:
    assert rules_of(origin("asm", [cert])) == [Rule.uncertified_asm_in_cahra]


def test_suspended_fairmined_is_uncertified() -> None:
    certified = Cert("fairmined", "certified", date(2024, 1, 1), date(2026, 12, 31), 1)
    suspended = Cert("fairmined", "suspended", date(2025, 3, 1), None, 2)
    assert rules_of(origin("asm", [certified, suspended])) == [Rule.uncertified_asm_in_cahra]
    # before the suspension took effect, the mine was certified
    assert rules_of(origin("asm", [certified, suspended], on=date(2025, 2, 28))) == [Rule.certified_asm_in_cahra]


def test_asm_certification_lapsed_before_the_event_is_uncertified() -> None:
    lapsed = Cert("fairmined", "certified", date(2023, 1, 1), ON - timedelta(days=1), 1)
    assert rules_of(origin("asm", [lapsed])) == [Rule.uncertified_asm_in_cahra]
    last_day = Cert("fairmined", "certified", date(2023, 1, 1), ON, 1)
    assert rules_of(origin("asm", [last_day])) == [Rule.certified_asm_in_cahra]


def test_asm_certification_starting_after_the_event_does_not_count() -> None:
    future = Cert("itsci", "member", ON + timedelta(days=1), None, 1)
    assert rules_of(origin("asm", [future])) == [Rule.uncertified_asm_in_cahra]


def test_asm_with_one_lapsed_and_one_valid_scheme_is_certified() -> None:
    certs = [
        Cert("fairmined", "suspended", date(2024, 1, 1), None, 1),
        Cert("craft", "progressing", date(2024, 1, 1), None, 2),
    ]
    f = only(origin("asm", certs), Rule.certified_asm_in_cahra)
    assert f.evidence["certification"] == "craft:progressing"


@pytest.mark.parametrize("mining_type", ["asm", "lsm"])
def test_origin_outside_any_cahra_raises_nothing(mining_type: str) -> None:
    assert origin(mining_type, [IRMA], country="RW", region="RW-02") == []


def test_same_place_after_the_listing_ended_raises_nothing() -> None:
    in_force = date(2024, 12, 31)
    ended = date(2025, 1, 1)
    assert rules_of(origin("asm", [], "MM", "MM-11", in_force)) == [Rule.uncertified_asm_in_cahra]
    assert origin("asm", [], "MM", "MM-11", ended) == []
    assert rules_of(origin("lsm", [IRMA], "MM", "MM-11", in_force)) == [Rule.origin_in_cahra]
    assert origin("lsm", [IRMA], "MM", "MM-11", ended) == []


def test_same_place_before_the_listing_started_raises_nothing() -> None:
    assert origin("asm", [], "CD", "CD-SK", date(2019, 12, 31)) == []


def test_lsm_without_irma_is_low() -> None:
    findings = origin("lsm", [], country="RW", region=None)
    assert rules_of(findings) == [Rule.lsm_without_irma]
    f = findings[0]
    assert f.level is Severity.low
    assert (f.lot_id, f.cause) == ("L1", "mine-1:irma:L1")
    assert f.participants == ("mine-1",)
    assert f.evidence == {"event_id": "E1", "mine": "mine-1", "on": ON.isoformat(), "irma_level": None}


# IRMA Transparency is `lsm_irma_transparency` (issue 23: tests/audit/test_rules_grading.py)
@pytest.mark.parametrize("level", ["irma_50", "irma_75", "irma_100"])
def test_lsm_with_irma_valid_on_the_day_is_not_flagged(level: str) -> None:
    assert origin("lsm", [Cert("irma", level, ON, ON, 1)], country="RW", region=None) == []


def test_lsm_with_irma_lapsed_or_not_yet_valid_is_flagged() -> None:
    lapsed = Cert("irma", "irma_75", date(2020, 1, 1), ON - timedelta(days=1), 1)
    future = Cert("irma", "irma_75", ON + timedelta(days=1), None, 2)
    assert rules_of(origin("lsm", [lapsed, future], country="RW", region=None)) == [Rule.lsm_without_irma]


def test_other_schemes_do_not_stand_in_for_irma() -> None:
    certs = [Cert("rmap", "conformant", date(2020, 1, 1), None, 1), Cert("fairmined", "certified", ON, None, 2)]
    assert rules_of(origin("lsm", certs, country="RW", region=None)) == [Rule.lsm_without_irma]


def test_asm_never_gets_the_irma_flag() -> None:
    assert origin("asm", [], country="RW", region=None) == []


def test_unknown_mining_type_in_cahra_is_treated_as_an_origin_in_cahra() -> None:
    # current behaviour: anything that is not "asm" gets the (high) origin flag, and no IRMA check
    assert rules_of(origin(None)) == [Rule.origin_in_cahra]
    assert origin(None, country="RW", region=None) == []


def test_origin_cause_is_stable_and_independent_of_the_event() -> None:
    a = origin("asm", event_id="E1")
    b = origin("asm", event_id="E2")
    assert a == origin("asm", event_id="E1")
    assert [(f.rule, f.cause) for f in a] == [(f.rule, f.cause) for f in b]
    assert origin("asm", lot_id="L2")[0].cause == "L2:origin"


def test_certified_and_uncertified_asm_share_the_cause() -> None:
    certified = origin("asm", [Cert("itsci", "member", date(2024, 1, 1), None, 1)])[0]
    uncertified = origin("asm")[0]
    assert certified.cause == uncertified.cause == "L1:origin"
    assert certified.rule != uncertified.rule


# --- transit through a CAHRA ---------------------------------------------------------------------------------

UG = Area("A-UG", "UG", None, date(2022, 1, 1), date(2025, 12, 31), "EU CAHRA list")


def transit(countries: list[str], on: date = ON, areas: list[Area] | None = None) -> list[Finding]:
    return transit_findings(
        lot_id="L1",
        shipment_id="S1",
        event_id="E1",
        countries=countries,
        on=on,
        areas=[*AREAS, UG] if areas is None else areas,
        sender="trader-1",
        receiver="smelter-1",
    )


def test_transit_through_listed_countries_gives_one_finding_each() -> None:
    findings = transit(["RW", "CD", "UG", "TZ"])
    assert [f.rule for f in findings] == [Rule.transit_through_cahra] * 2
    assert [f.cause for f in findings] == ["S1:CD", "S1:UG"]
    cd, ug = findings
    assert cd.lot_id == "L1"
    assert cd.level is Severity.medium
    assert cd.participants == ("trader-1", "smelter-1")
    assert cd.evidence == {
        "event_id": "E1",
        "shipment_id": "S1",
        "country": "CD",
        "cahra_area": "A-CD",
        "on": ON.isoformat(),
    }
    assert (ug.evidence["country"], ug.evidence["cahra_area"]) == ("UG", "A-UG")


def test_region_only_listing_does_not_flag_a_transit_country_as_listed() -> None:
    # ...but a country with listed regions and no region named is `transit_region_unknown` (issue 23)
    assert [f.rule for f in transit(["MM"], on=date(2023, 6, 1))] == [Rule.transit_region_unknown]


def test_transit_through_unlisted_countries_or_no_route_raises_nothing() -> None:
    assert transit(["RW", "TZ", "KE"]) == []
    assert transit([]) == []


def test_transit_listing_is_judged_as_of_the_day() -> None:
    assert [f.cause for f in transit(["UG"], on=date(2025, 12, 31))] == ["S1:UG"]
    assert transit(["UG"], on=date(2026, 1, 1)) == []
    assert transit(["UG"], on=date(2021, 12, 31)) == []


def test_transit_findings_are_stable() -> None:
    assert transit(["CD", "UG"]) == transit(["CD", "UG"])


# --- smelter / refiner RMAP status ---------------------------------------------------------------------------

CONFORMANT = Cert("rmap", "conformant", date(2024, 7, 1), date(2025, 6, 30), 1)


def smelt(
    certs: list[Cert],
    on: date = ON,
    actor_kind: str = "smelter",
    lot_ids: tuple[str, ...] = ("O1", "O2", "O3"),
) -> list[Finding]:
    return smelter_findings(
        lot_ids=list(lot_ids),
        transformation_id="T1",
        event_id="E1",
        actor="CID001234",
        actor_kind=actor_kind,
        on=on,
        certs=certs,
    )


@pytest.mark.parametrize("actor_kind", ["smelter", "refiner"])
def test_conformant_smelter_or_refiner_raises_nothing(actor_kind: str) -> None:
    assert smelt([CONFORMANT], actor_kind=actor_kind) == []


@pytest.mark.parametrize("actor_kind", ["smelter", "refiner"])
def test_smelter_without_rmap_gives_one_finding_for_all_outputs(actor_kind: str) -> None:
    findings = smelt([], actor_kind=actor_kind)
    assert len(findings) == 1
    f = findings[0]
    assert f.rule is Rule.smelter_not_rmap_conformant
    assert f.lot_id == "O1"
    assert f.also == ("O2", "O3")
    assert f.cause == "T1"
    assert f.participants == ("CID001234",)
    assert f.level is Severity.high
    assert f.evidence == {  # no event id: which of the transformation's events came first varies with delivery
        "transformation_id": "T1",
        "smelter": "CID001234",
        "actor_kind": actor_kind,
        "transformation_kind": None,
        "screened_as_smelter_by": "actor_kind",
        "rmap_status": "none",
        "on": ON.isoformat(),
    }


def test_single_output_has_no_also() -> None:
    f = only(smelt([], lot_ids=("O1",)), Rule.smelter_not_rmap_conformant)
    assert (f.lot_id, f.also) == ("O1", ())


def test_rmap_status_is_evaluated_as_of_the_event_date() -> None:
    # conformant on the day of the transformation, lapsed later: not flagged
    assert smelt([CONFORMANT], on=date(2025, 6, 30)) == []
    assert smelt([CONFORMANT], on=date(2024, 7, 1)) == []
    # the day after it lapsed, or before it started: flagged, with no status
    for on in (date(2025, 7, 1), date(2024, 6, 30)):
        f = only(smelt([CONFORMANT], on=on), Rule.smelter_not_rmap_conformant)
        assert f.evidence["rmap_status"] == "none"
        assert f.evidence["on"] == on.isoformat()


# RMAP Active is `smelter_rmap_active` (issue 23: tests/audit/test_rules_grading.py)
@pytest.mark.parametrize("status", ["non_conformant", "suspended"])
def test_non_conformant_statuses_are_flagged_with_the_status(status: str) -> None:
    f = only(
        smelt([Cert("rmap", status, date(2025, 1, 1), None, 1)]),
        Rule.smelter_not_rmap_conformant,
    )
    assert f.evidence["rmap_status"] == status
    assert status in f.summary


def test_latest_rmap_record_wins() -> None:
    suspended = Cert("rmap", "suspended", date(2025, 5, 1), None, 2)
    assert only(smelt([CONFORMANT, suspended]), Rule.smelter_not_rmap_conformant).evidence["rmap_status"] == (
        "suspended"
    )
    assert smelt([CONFORMANT, suspended], on=date(2025, 4, 30)) == []
    restored = Cert("rmap", "conformant", date(2025, 5, 5), None, 3)
    assert smelt([CONFORMANT, suspended, restored]) == []


def test_other_schemes_do_not_make_a_smelter_conformant() -> None:
    assert only(smelt([Cert("irma", "irma_100", date(2020, 1, 1), None, 1)]), Rule.smelter_not_rmap_conformant)


@pytest.mark.parametrize("actor_kind", ["trader", "mine", "component_manufacturer", "manufacturer", "recycler"])
def test_other_participants_transforming_raise_nothing(actor_kind: str) -> None:
    assert smelt([], actor_kind=actor_kind) == []


def test_smelter_findings_are_stable() -> None:
    assert smelt([]) == smelt([])
    assert smelt([])[0].cause == smelt([], on=date(2025, 7, 1))[0].cause == "T1"


# --- backdated origins and the capacity's year ------------------------------------------------------------------


def test_an_origin_recorded_within_the_allowed_age_is_not_backdated() -> None:
    from audit.rules import backdated_origin

    at = datetime(2026, 1, 1, tzinfo=UTC)
    ok = backdated_origin(lot_id="L1", event_id="E1", mine="m", origin_at=at, recorded_at=at + timedelta(days=365), t=T)
    assert ok is None
    f = backdated_origin(
        lot_id="L1", event_id="E1", mine="m", origin_at=at, recorded_at=at + timedelta(days=365, seconds=1), t=T
    )
    assert f is not None and (f.rule, f.cause, f.participants) == (Rule.backdated_origin, "L1:backdated", ("m",))
    assert f.level is Severity.medium and f.evidence["max_origin_age_days"] == 365
    strict = Thresholds(max_origin_age_days=30)
    assert backdated_origin(
        lot_id="L1", event_id="E1", mine="m", origin_at=at, recorded_at=at + timedelta(days=31), t=strict
    )


def test_the_capacity_flag_says_the_year_counts_lots_dated_or_recorded_in_it() -> None:
    f = capacity(kg("100"), kg("150"))
    assert f is not None and "dated or recorded in" in f.summary
    assert f.evidence["counted"] == "origin lots dated in the year, and backdated ones recorded in it"


def test_a_shipment_dated_at_the_end_of_time_cannot_be_judged_overdue() -> None:
    with pytest.raises(OverflowError):
        transit_overdue(
            lot_id="L1",
            shipment_id="S1",
            shipped_at=datetime(9999, 12, 20, tzinfo=UTC),
            max_transit_days=None,
            now=datetime(2026, 11, 5, tzinfo=UTC),
            sender="a",
            receiver="b",
            t=T,
        )  # the projection judges it on its own (`Context.judge`): an unjudgeable_event flag, the receipt goes on


def test_a_lot_counts_against_capacity_in_its_own_year_unless_it_is_backdated() -> None:
    dec, jan = datetime(2026, 12, 30, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC)
    assert rules.production_years(dec, jan, T) == (2026,)  # an honest December lot recorded in January: once
    assert rules.production_years(jan, jan, T) == (2027,)
    old = datetime(2001, 6, 1, tzinfo=UTC)
    assert rules.production_years(old, jan, T) == (2001, 2027)  # backdated: also the year it was recorded in
    assert rules.production_years(dec, jan, Thresholds(max_origin_age_days=1)) == (2026, 2027)
