"""Free text in request bodies: its length checked on what was sent, then stripped for storage.

pydantic's `StringConstraints(strip_whitespace=True, max_length=n)` strips first and checks the length after, so
1,200,000 spaces and an `x` passed as a one-character string, and whatever kept the request (a refusal record, an
event) kept the megabytes. `as_sent_at_most(n)` refuses a value longer than `n` characters before it is stripped:

    Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), as_sent_at_most(200)]
"""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def as_sent_at_most(max_length: int) -> BeforeValidator:
    """For `Annotated[str, StringConstraints(strip_whitespace=True, max_length=n, ...), as_sent_at_most(n)]`: the
    length is checked on the value as sent too (this runs before the constraints, so before the stripping)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters (as sent, before surrounding spaces are stripped)",
                {"max_length": max_length},
            )
        return value

    return BeforeValidator(check)
