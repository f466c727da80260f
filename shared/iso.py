"""ISO 3166 codes (countries and their subdivisions), from pycountry."""

from __future__ import annotations

import pycountry

# ISO 3166-2 codes that were replaced; published lists may still use the old one. old -> new.
RENAMED_SUBDIVISIONS = {"IN-CT": "IN-CG"}


def is_country(code: str) -> bool:
    return len(code) == 2 and pycountry.countries.get(alpha_2=code.upper()) is not None


def current_region(code: str) -> str:
    code = code.upper()
    return RENAMED_SUBDIVISIONS.get(code, code)


def is_region(code: str) -> bool:
    return pycountry.subdivisions.get(code=current_region(code)) is not None


def country_validator(value: str) -> str:
    """For pydantic `AfterValidator`: an existing ISO 3166-1 alpha-2 code, upper case."""
    if not is_country(value):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value.upper()
