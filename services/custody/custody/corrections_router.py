"""`POST /lots/{lot_id}/corrections`: correct an event you recorded (docs/corrections.md). Thin: the write is
`custody.corrections.correct`, run by the unit of work like every custody write (Idempotency-Key, refusals)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from custody import corrections
from custody.corrections_schemas import Correction, CorrectionCreate
from custody.router import WRITE_RESPONSES, IdempotencyKey, _answer, _write
from shared.auth import PrincipalDep
from shared.problems import problem_responses

router = APIRouter(responses=problem_responses(401, 403, 422, 503))


@router.post(
    "/lots/{lot_id}/corrections",
    status_code=201,
    response_model=Correction,
    tags=["custody operations"],
    summary="Correct an event of the lot you recorded: it stays on the chain, marked as corrected",
    description="The event is never edited: a `custody.event.corrected` event, appended to the lot's chain, "
    "references it and says why (`did_not_occur` or `incorrect_data`, as an EPCIS errorDeclaration). Only the "
    "participant that recorded the event corrects it (anyone else: 404, as for no such event); an event is "
    "corrected once and a correction is not corrected (409). A shipment declared `did_not_occur` while in transit "
    "is voided: the lot is active with its sender again and the shipment can no longer be received.",
    responses=WRITE_RESPONSES,
)
async def correct_event(
    lot_id: str, body: CorrectionCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    write = await _write(request, who, key, body)
    return _answer(await corrections.correct(write=write, lot_id=lot_id, body=body))
