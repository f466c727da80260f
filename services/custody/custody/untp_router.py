"""`GET /lots/{lot_id}/untp/dte`: a lot's custody events as a UNTP Digital Traceability Event credential, signed by
the registry (VC-JOSE). The events are the lot's history as the caller may see it (`service.history`: the same 404
for a lot it may not read as for one that does not exist), named as `GET /lots/{lot_id}/epcis` names them
(`epcis_query.enrich`: a lot with an LGTIN by its GS1 Digital Link, a captured event by its EPCIS eventID)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from custody import epcis_query, service
from custody.router import _reads
from custody.untp_dte import dte_events
from shared import untp, vcjose
from shared.auth import PrincipalDep
from shared.problems import problem_responses

router = APIRouter(tags=["untp"], responses=problem_responses(401, 403, 422, 503))

_DTE_EXAMPLE = untp.example(
    "dte",
    [
        {
            "type": ["ObjectEvent", "Event"],
            "id": "urn:uuid:0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
            "eventTime": "2026-03-01T08:00:00.000Z",
            "action": "add",
            "bizStep": "https://ref.gs1.org/cbv/BizStep-commissioning",
            "disposition": "https://ref.gs1.org/cbv/Disp-active",
            "quantityList": [
                {"productId": "urn:mcoc:lot:ORE-1", "productName": "cobalt ore", "quantity": 1000.0, "uom": "KGM"}
            ],
            "custodyEvents": [
                {
                    "eventId": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                    "lotId": "ORE-1",
                    "seq": 1,
                    "hash": "4f1c" + "0" * 60,
                    "type": "custody.lot.registered",
                }
            ],
        }
    ],
)


@router.get(
    "/lots/{lot_id}/untp/dte",
    response_class=Response,
    responses=vcjose.credential_responses(_DTE_EXAMPLE),
    summary="A lot's custody events as a UNTP 0.6.1 Digital Traceability Event credential, signed by the registry "
    "(VC-JOSE); each event names the custody events it stands for and their hashes (docs/untp.md)",
)
async def traceability_events(lot_id: str, request: Request, who: PrincipalDep) -> Response:
    media = vcjose.wants(request.headers.get("accept", ""))
    reads = _reads(request)
    history = await service.history(reads=reads, who=who, lot_id=lot_id)
    async with reads.pool.acquire() as conn:  # the lots' EPC classes and captured event ids, as the EPCIS export
        history = await epcis_query.enrich(conn, history)
    sign = vcjose.SignRequest(
        kind="dte",
        lot_id=history["lot_id"],
        requested_by="custody",
        on_behalf_of=who.subject,
        subject=dte_events(history),
    )
    return vcjose.signed_response(await vcjose.registry_signature(request.app.state.settings, sign), media)
