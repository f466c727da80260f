"""`GET /lots/{lot_id}/untp/dpp`: a product lot's UNTP Digital Product Passport, signed by the registry (VC-JOSE).
Who may ask is who may read the lot's battery passport (`filings_service.battery_due_diligence`: the holder and
everyone downstream, the operator, officers, a regulator whose grant opens it); anyone else gets the same 404 as for
a lot that does not exist."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from audit import filings_service, untp_dpp
from audit.filings_router import LotAuditDep
from shared import untp, vcjose
from shared.auth import PrincipalDep
from shared.problems import problem_responses
from shared.vocab import Mineral

ALL_MINERALS = frozenset(m.value for m in Mineral)
"""A passport reports every mineral upstream, not only the Battery Regulation's raw materials."""

router = APIRouter(tags=["untp"], responses=problem_responses(401, 403, 422, 503))

_DPP_EXAMPLE = untp.example(
    "dpp",
    {
        "type": ["ProductPassport"],
        "id": "urn:mcoc:passport:cellco:battery-7",
        "product": {
            "type": ["Product"],
            "id": "urn:mcoc:lot:cellco:battery-7",
            "name": "cobalt lot cellco:battery-7",
            "batchNumber": "cellco:battery-7",
            "dimensions": {"weight": {"value": 450.0, "unit": "KGM"}},
        },
        "granularityLevel": "batch",
        "materialsProvenance": [
            {
                "type": ["Material"],
                "name": "Cobalt",
                "originCountry": "CD",
                "massFraction": 0.3,
                "mass": {"value": 135.0, "unit": "KGM"},
                "recycledMassFraction": 0.0,
                "originKind": "mine",
                "originLots": ["kolwezi:ore-12"],
            }
        ],
        "conformityClaim": [],
        "dueDiligence": {"smeltersAndRefiners": [], "risks": [], "openRisks": 0, "truncated": False},
    },
)


@router.get(
    "/lots/{lot_id}/untp/dpp",
    response_class=Response,
    responses=vcjose.credential_responses(_DPP_EXAMPLE),
    summary="A product lot's UNTP 0.6.1 Digital Product Passport (materials provenance, smelters and RMAP status, "
    "certifications, flags), signed by the registry (VC-JOSE); the same read rights as the battery passport "
    "(docs/untp.md)",
)
async def untp_passport(lot_id: str, request: Request, audit: LotAuditDep, who: PrincipalDep) -> Response:
    media = vcjose.wants(request.headers.get("accept", ""))
    # every mineral upstream (tin, tantalum, tungsten, gold as much as the battery materials)
    dd = await filings_service.battery_due_diligence(audit=audit, who=who, lot_id=lot_id, materials=ALL_MINERALS)
    shares = await filings_service.responsible_share(audit=audit, who=who, lot_id=lot_id)
    settings = request.app.state.settings
    sign = vcjose.SignRequest(
        kind="dpp",
        lot_id=dd.lot_id,
        requested_by="audit",
        on_behalf_of=who.subject,
        subject=untp_dpp.passport(dd, shares, custody_url=settings.custody_url),
    )
    return vcjose.signed_response(await vcjose.registry_signature(settings, sign), media)
