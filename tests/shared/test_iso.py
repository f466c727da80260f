"""Unit tests for `shared.iso`: ISO 3166-1 country and ISO 3166-2 subdivision codes, renamed codes mapped."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import AfterValidator, TypeAdapter, ValidationError

from shared.iso import RENAMED_SUBDIVISIONS, country_validator, current_region, is_country, is_region


@pytest.mark.parametrize("code", ["RW", "rw", "Cd", "UG"])
def test_alpha_2_codes_are_countries_in_any_case(code: str) -> None:
    assert is_country(code) is True


@pytest.mark.parametrize("code", ["XX", "RWA", "COD", "R", "", "RW-02"])
def test_other_codes_are_not_countries(code: str) -> None:
    assert is_country(code) is False


def test_renamed_subdivisions_map_to_codes_that_exist() -> None:
    assert RENAMED_SUBDIVISIONS
    for old, new in RENAMED_SUBDIVISIONS.items():
        assert is_region(new), new
        assert current_region(old.lower()) == new


@pytest.mark.parametrize(("code", "expected"), [("in-ct", "IN-CG"), ("IN-CT", "IN-CG"), ("rw-02", "RW-02")])
def test_current_region_upper_cases_and_maps_renamed_codes(code: str, expected: str) -> None:
    assert current_region(code) == expected


@pytest.mark.parametrize("code", ["RW-02", "cd-nk", "IN-CG", "IN-CT"])
def test_subdivision_codes_are_regions_renamed_or_not(code: str) -> None:
    assert is_region(code) is True


@pytest.mark.parametrize("code", ["RW-99", "RW", "XX-01", ""])
def test_other_codes_are_not_regions(code: str) -> None:
    assert is_region(code) is False


CountryCode = TypeAdapter(Annotated[str, AfterValidator(country_validator)])


def test_the_country_validator_upper_cases() -> None:
    assert country_validator("rw") == "RW"
    assert CountryCode.validate_python("cd") == "CD"


def test_the_country_validator_refuses_what_is_not_a_country() -> None:
    with pytest.raises(ValueError, match="'RWA' is not an ISO 3166-1 alpha-2 country code"):
        country_validator("RWA")
    with pytest.raises(ValidationError, match="ISO 3166-1"):
        CountryCode.validate_python("XX")
