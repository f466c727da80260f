"""Unit tests for the registry rules (`registry.domain`): pure functions, no I/O.

One group per rule: ISO country and region codes, the value each certification scheme records, periods and which
day they cover, what a participant held on a day, which listed conflict-affected or high-risk area covers a place,
and the cross-field rules of a participant. Every refusal names the field it is about (`where`), since that is what
the problem body shows the caller.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from registry.domain import (
    CERTIFIED_ASM,
    RENAMED_SUBDIVISIONS,
    SCHEME_VALUES,
    SMELTER_KINDS,
    CahraArea,
    CertificationFact,
    DomainError,
    Kind,
    Mineral,
    MiningType,
    Scheme,
    certifications_as_of,
    check_country,
    check_participant,
    check_period,
    check_region,
    check_scheme_value,
    in_force,
    is_cahra,
)

ON = date(2025, 3, 15)


# --- the error -------------------------------------------------------------------------------------------------


def test_domain_error_names_the_field_and_is_a_value_error() -> None:
    e = DomainError("identifiers.rmi_smelter_id", "not yours")
    assert isinstance(e, ValueError)
    assert (e.where, e.msg, str(e)) == (
        "identifiers.rmi_smelter_id",
        "not yours",
        "identifiers.rmi_smelter_id: not yours",
    )


# --- country and region codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [("RW", "RW"), ("cd", "CD"), ("Ug", "UG")])
def test_an_iso_country_code_is_accepted_in_upper_case(code: str, expected: str) -> None:
    assert check_country(code) == expected


@pytest.mark.parametrize("code", ["XX", "RWA", "R", "", "ZZ"])
def test_anything_else_is_not_a_country(code: str) -> None:
    with pytest.raises(DomainError) as e:
        check_country(code)
    assert e.value.where == "country"
    assert "ISO 3166-1" in e.value.msg


def test_a_country_error_names_the_given_field() -> None:
    with pytest.raises(DomainError) as e:
        check_country("XX", "areas[3].country")
    assert e.value.where == "areas[3].country"


@pytest.mark.parametrize(("code", "country", "expected"), [("RW-02", "RW", "RW-02"), ("cd-nk", "CD", "CD-NK")])
def test_a_region_of_the_country_is_accepted_in_upper_case(code: str, country: str, expected: str) -> None:
    assert check_region(code, country) == expected


def test_a_renamed_region_is_mapped_to_its_current_code() -> None:
    assert RENAMED_SUBDIVISIONS["IN-CT"] == "IN-CG"
    assert check_region("IN-CT", "IN") == "IN-CG"
    assert check_region("in-ct", "IN") == "IN-CG"


@pytest.mark.parametrize("code", ["RW-99", "RW", "NOPE", ""])
def test_an_unknown_region_is_refused(code: str) -> None:
    with pytest.raises(DomainError) as e:
        check_region(code, "RW")
    assert e.value.where == "region"
    assert "ISO 3166-2" in e.value.msg


def test_a_region_of_another_country_is_refused() -> None:
    with pytest.raises(DomainError) as e:
        check_region("CD-NK", "RW", "areas[0].region")
    assert e.value.where == "areas[0].region"
    assert "'CD-NK' is not in country 'RW'" in e.value.msg


# --- scheme values ---------------------------------------------------------------------------------------------


def test_every_scheme_has_its_vocabulary() -> None:
    assert set(SCHEME_VALUES) == set(Scheme)
    assert {s for s, (field, _) in SCHEME_VALUES.items() if field == "level"} == {Scheme.irma}


def test_certified_asm_statuses_are_statuses_the_scheme_has() -> None:
    assert set(CERTIFIED_ASM) == {Scheme.fairmined, Scheme.craft, Scheme.itsci}
    for scheme, statuses in CERTIFIED_ASM.items():
        field, allowed = SCHEME_VALUES[scheme]
        assert field == "status"
        assert statuses <= allowed, scheme


@pytest.mark.parametrize(
    ("scheme", "status"),
    [
        (Scheme.rmap, "conformant"),
        (Scheme.fairmined, "certified"),
        (Scheme.craft, "progressing"),
        (Scheme.itsci, "member"),
    ],
)
def test_status_schemes_take_a_status(scheme: Scheme, status: str) -> None:
    assert check_scheme_value(scheme, status, None) == ("status", status)


@pytest.mark.parametrize("level", ["transparency", "irma_50", "irma_75", "irma_100"])
def test_irma_takes_an_achievement_level(level: str) -> None:
    assert check_scheme_value(Scheme.irma, None, level) == ("level", level)


def test_a_status_scheme_given_a_level_is_refused_at_level() -> None:
    with pytest.raises(DomainError) as e:
        check_scheme_value(Scheme.rmap, "conformant", "irma_50")
    assert e.value.where == "level"
    assert "rmap records a status, not a level" in e.value.msg


def test_irma_given_a_status_is_refused_at_status() -> None:
    with pytest.raises(DomainError) as e:
        check_scheme_value(Scheme.irma, "conformant", "irma_50")
    assert e.value.where == "status"
    assert "irma records a level, not a status" in e.value.msg


@pytest.mark.parametrize(("scheme", "field"), [(Scheme.rmap, "status"), (Scheme.irma, "level")])
def test_a_missing_value_is_refused_with_the_allowed_ones(scheme: Scheme, field: str) -> None:
    with pytest.raises(DomainError) as e:
        check_scheme_value(scheme, None, None)
    assert e.value.where == field
    assert str(sorted(SCHEME_VALUES[scheme][1])) in e.value.msg


@pytest.mark.parametrize(
    ("scheme", "status", "level", "field"),
    [
        (Scheme.rmap, "certified", None, "status"),  # a Fairmined word, not an RMAP one
        (Scheme.craft, "member", None, "status"),
        (Scheme.irma, None, "irma_25", "level"),
        (Scheme.itsci, "MEMBER", None, "status"),  # values are case-sensitive
    ],
)
def test_a_value_the_scheme_does_not_have_is_refused(scheme: Scheme, status: str, level: str, field: str) -> None:
    with pytest.raises(DomainError) as e:
        check_scheme_value(scheme, status, level)
    assert e.value.where == field
    assert f"is not a {scheme.value} {field}" in e.value.msg


# --- periods ---------------------------------------------------------------------------------------------------


def test_a_period_may_end_on_its_first_day_or_later_or_never() -> None:
    check_period(ON, ON, "valid_from", "valid_until")
    check_period(ON, date(2026, 1, 1), "valid_from", "valid_until")
    check_period(ON, None, "valid_from", "valid_until")


def test_a_period_ending_before_it_starts_is_refused_at_its_end() -> None:
    with pytest.raises(DomainError) as e:
        check_period(ON, date(2025, 3, 14), "effective_from", "effective_to")
    assert e.value.where == "effective_to"
    assert "effective_to (2025-03-14) is before effective_from (2025-03-15)" in e.value.msg


@pytest.mark.parametrize(
    ("on", "expected"),
    [(date(2025, 1, 1), True), (date(2025, 6, 30), True), (date(2024, 12, 31), False), (date(2025, 7, 1), False)],
)
def test_in_force_includes_both_bounds(on: date, expected: bool) -> None:
    assert in_force(date(2025, 1, 1), date(2025, 6, 30), on) is expected


def test_a_period_without_end_is_in_force_from_its_start_on() -> None:
    assert in_force(date(2025, 1, 1), None, date(2099, 1, 1)) is True
    assert in_force(date(2025, 1, 1), None, date(2024, 12, 31)) is False


# --- certifications as of a day ----------------------------------------------------------------------------------


def fact(scheme: Scheme, value: str, start: date, end: date | None, seq: int) -> CertificationFact:
    return CertificationFact(scheme, value, start, end, seq)


def test_no_facts_no_certifications() -> None:
    assert certifications_as_of([], ON) == []


def test_only_certifications_in_force_that_day_count() -> None:
    lapsed = fact(Scheme.rmap, "conformant", date(2024, 1, 1), date(2025, 3, 14), 1)
    future = fact(Scheme.itsci, "member", date(2025, 3, 16), None, 2)
    assert certifications_as_of([lapsed, future], ON) == []
    assert certifications_as_of([lapsed, future], date(2025, 3, 14)) == [lapsed]
    assert certifications_as_of([lapsed, future], date(2025, 3, 16)) == [future]


def test_the_latest_recorded_fact_per_scheme_wins() -> None:
    conformant = fact(Scheme.rmap, "conformant", date(2024, 1, 1), None, 1)
    suspended = fact(Scheme.rmap, "suspended", date(2025, 1, 1), None, 2)
    # recorded order decides, not the order given nor the start date
    assert certifications_as_of([suspended, conformant], ON) == [suspended]
    restored = fact(Scheme.rmap, "conformant", date(2024, 6, 1), None, 3)
    assert certifications_as_of([conformant, suspended, restored], ON) == [restored]


def test_a_later_record_not_in_force_does_not_hide_an_earlier_one() -> None:
    conformant = fact(Scheme.rmap, "conformant", date(2024, 1, 1), None, 1)
    suspended_later = fact(Scheme.rmap, "suspended", date(2025, 6, 1), None, 2)
    assert certifications_as_of([conformant, suspended_later], ON) == [conformant]


def test_one_certification_per_scheme_sorted_by_scheme() -> None:
    facts = [
        fact(Scheme.rmap, "conformant", date(2024, 1, 1), None, 1),
        fact(Scheme.irma, "irma_75", date(2024, 1, 1), None, 2),
        fact(Scheme.craft, "progressing", date(2024, 1, 1), None, 3),
    ]
    assert [f.scheme for f in certifications_as_of(facts, ON)] == [Scheme.craft, Scheme.irma, Scheme.rmap]
    assert [f.scheme for f in certifications_as_of(reversed(facts), ON)] == [Scheme.craft, Scheme.irma, Scheme.rmap]


# --- conflict-affected and high-risk areas -------------------------------------------------------------------------


def area(country: str, region: str | None, start: date = date(2024, 1, 1), end: date | None = None) -> CahraArea:
    return CahraArea(country=country, region=region, effective_from=start, effective_to=end, source="eu-cahra")


def test_an_area_defaults_to_high_risk_not_conflict_affected() -> None:
    a = area("CD", None)
    assert (a.high_risk, a.conflict_affected, a.name) == (True, False, None)


@pytest.mark.parametrize("region", [None, "CD-NK", "CD-SK"])
def test_a_listed_country_covers_all_its_regions_and_none(region: str | None) -> None:
    cd = area("CD", None)
    assert is_cahra([cd], "CD", region, ON) is cd


def test_a_listed_region_covers_only_that_region() -> None:
    nk = area("CD", "CD-NK")
    assert is_cahra([nk], "CD", "CD-NK", ON) is nk
    assert is_cahra([nk], "CD", "CD-SK", ON) is None
    assert is_cahra([nk], "CD", None, ON) is None  # a place known only by its country is not in the region


def test_an_area_covers_nothing_in_another_country() -> None:
    assert is_cahra([area("CD", None), area("UG", "UG-C")], "RW", None, ON) is None
    assert is_cahra([area("CD", None)], "RW", "CD-NK", ON) is None  # the country, not the region, decides


def test_a_listing_counts_only_while_in_force_with_both_bounds() -> None:
    a = area("CD", "CD-NK", date(2025, 1, 1), date(2025, 6, 30))
    assert is_cahra([a], "CD", "CD-NK", date(2025, 1, 1)) is a
    assert is_cahra([a], "CD", "CD-NK", date(2025, 6, 30)) is a
    assert is_cahra([a], "CD", "CD-NK", date(2024, 12, 31)) is None
    assert is_cahra([a], "CD", "CD-NK", date(2025, 7, 1)) is None


def test_the_first_covering_area_is_returned() -> None:
    expired = area("CD", None, date(2020, 1, 1), date(2020, 12, 31))
    region, country = area("CD", "CD-NK"), area("CD", None)
    assert is_cahra([expired, region, country], "CD", "CD-NK", ON) is region
    assert is_cahra([expired, country, region], "CD", "CD-NK", ON) is country


def test_no_areas_no_cahra() -> None:
    assert is_cahra([], "CD", "CD-NK", ON) is None


# --- participants ----------------------------------------------------------------------------------------------


def participant(**overrides: Any) -> tuple[str, str | None]:
    args: dict[str, Any] = {
        "kind": Kind.trader,
        "country": "RW",
        "region": None,
        "mining_type": None,
        "capacity": {},
        "rmi_smelter_id": None,
    }
    args.update(overrides)
    return check_participant(**args)


def refused(**overrides: Any) -> DomainError:
    with pytest.raises(DomainError) as e:
        participant(**overrides)
    return e.value


def test_a_plain_trader_is_accepted() -> None:
    assert participant() == ("RW", None)


def test_country_and_region_are_normalised() -> None:
    assert participant(country="rw", region="rw-02") == ("RW", "RW-02")
    assert participant(country="in", region="IN-CT") == ("IN", "IN-CG")


def test_an_empty_region_means_none() -> None:
    assert participant(region="") == ("RW", None)


def test_the_country_and_region_are_checked() -> None:
    assert refused(country="XX").where == "country"
    assert refused(region="CD-NK").where == "region"


@pytest.mark.parametrize("mining_type", list(MiningType))
def test_a_mine_has_a_mining_type_and_may_declare_capacity(mining_type: MiningType) -> None:
    assert participant(kind=Kind.mine, mining_type=mining_type, capacity={Mineral.tin: 12000.0}) == ("RW", None)


def test_a_mine_without_mining_type_is_refused() -> None:
    e = refused(kind=Kind.mine)
    assert e.where == "mining_type"
    assert "asm or lsm" in e.msg


@pytest.mark.parametrize("kind", [k for k in Kind if k != Kind.mine])
def test_only_mines_have_a_mining_type(kind: Kind) -> None:
    e = refused(kind=kind, mining_type=MiningType.asm)
    assert e.where == "mining_type"
    assert kind.value in e.msg


@pytest.mark.parametrize("kind", [k for k in Kind if k != Kind.mine])
def test_only_mines_declare_a_capacity(kind: Kind) -> None:
    e = refused(kind=kind, capacity={Mineral.tin: 1.0})
    assert e.where == "annual_capacity_kg"
    assert kind.value in e.msg


def test_smelter_kinds_are_smelters_and_refiners() -> None:
    assert frozenset({Kind.smelter, Kind.refiner}) == SMELTER_KINDS


@pytest.mark.parametrize("kind", [Kind.smelter, Kind.refiner])
def test_smelters_and_refiners_may_carry_an_rmi_smelter_id(kind: Kind) -> None:
    assert participant(kind=kind, rmi_smelter_id="CID001234") == ("RW", None)


@pytest.mark.parametrize("kind", [k for k in Kind if k not in (Kind.smelter, Kind.refiner, Kind.mine)])
def test_others_may_not_carry_an_rmi_smelter_id(kind: Kind) -> None:
    e = refused(kind=kind, rmi_smelter_id="CID001234")
    assert e.where == "identifiers.rmi_smelter_id"
    assert kind.value in e.msg


def test_a_mine_may_not_carry_an_rmi_smelter_id() -> None:
    e = refused(kind=Kind.mine, mining_type=MiningType.asm, rmi_smelter_id="CID001234")
    assert e.where == "identifiers.rmi_smelter_id"


def test_the_country_is_checked_before_the_kind_rules() -> None:
    assert refused(kind=Kind.mine, country="XX").where == "country"
