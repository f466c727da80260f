"""Free text in every service's request bodies is measured as sent, then stripped (`shared.text`)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from audit.schemas import EvidenceRef, Note
from custody.schemas import ConsumptionCreate
from registry.schemas import CahraCreate, ParticipantCreate


class _Note(BaseModel):
    note: Note


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (ParticipantCreate, {"name": " " * 200 + "x", "kind": "trader", "country": "RW"}, "name"),
        (
            CahraCreate,
            {"country": "CD", "conflict_affected": True, "effective_from": "2020-01-01", "source": " " * 300 + "s"},
            "source",
        ),
        (_Note, {"note": " " * 2000 + "n"}, "note"),
        (EvidenceRef, {"description": "\n" * 500 + "d", "sha256": "0" * 64}, "description"),
        (
            ConsumptionCreate,
            {"product": " " * 200 + "p", "mass_kg": 1, "consumed_at": "2026-11-01T00:00:00Z"},
            "product",
        ),
    ],
)
def test_a_value_padded_past_its_limit_is_refused_by_its_length_as_sent(
    model: type[BaseModel], body: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    [error] = caught.value.errors()
    assert error["loc"] == (field,) and error["type"] == "string_too_long"
    # Within the limit as sent, the value is still stripped.
    short = {k: (v.strip()[:1] + "  " if k == field and isinstance(v, str) else v) for k, v in body.items()}
    assert getattr(model.model_validate(short), field) == short[field].strip()
