"""The filings' endpoints: the CMRT and the EMRT of a participant for a period (JSON, `.xlsx`, `.csv`). Parse, call
the use case (`audit/filings_service.py`), shape the response (`audit/filings_export.py`). No SQL.

Part R (issue 25) adds its routes (the responsibly-produced share, the battery passport) at the end of this file,
below the marker `# --- part R ---`, on the same `router`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from audit import battery_passport, shares
from audit import filings_export as export
from audit import filings_service as service
from shared.auth import PrincipalDep
from shared.problems import problem_responses

router = APIRouter(tags=["filings"], responses=problem_responses(401, 403, 404, 422, 503))


def _pool(request: Request) -> service.Pool:
    return request.app.state.runtime.pool  # type: ignore[no-any-return]


PoolDep = Annotated[service.Pool, Depends(_pool)]

From = Annotated[date, Query(alias="from", description="First day of the period (UTC)")]
To = Annotated[date, Query(alias="to", description="Day after the period (exclusive); at most 400 days after `from`")]
Products = Annotated[
    list[str] | None,
    Query(
        alias="product",
        max_length=service.MAX_PRODUCTS,
        description="Only the consumptions naming these products (repeatable, at most 50; your own products)",
    ),
]
Basis = Annotated[
    Literal["consumed", "received"],
    Query(description="`consumed`: what you consumed in the period (default); `received`: the lots you received"),
]
Participant = Annotated[
    str | None,
    Query(max_length=200, description="Whose filing (the operator, a regulator for a participant its grant opens)"),
]
Other = Annotated[
    bool,
    Query(description="EMRT: also the minerals we carry beyond the EMRT's list (docs/filings.md, `other minerals`)"),
]


def _ask(
    template: str,
    start: date,
    end: date,
    products: list[str] | None,
    basis: str,
    participant: str | None,
    other: bool = False,
) -> service.Ask:
    return service.Ask(template, start, end, tuple(dict.fromkeys(products or ())), basis, participant, other)


_XLSX = {200: {"content": {export.XLSX_MEDIA_TYPE: {}}, "description": "The workbook"}}
_CSV = {200: {"content": {"text/csv": {}}, "description": "The Smelter List's columns A-Q, then ours"}}


def _file(content: bytes, media: str, name: str) -> Response:
    return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _name(b: service.Built, ext: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in b.filer)
    return f"{b.filing.template}-{safe}-{b.ask.start.isoformat()}-{b.ask.end.isoformat()}.{ext}"


class _Asked:
    """The dependency that builds the filing asked for, whichever form it is answered in: one set of query
    parameters for the JSON, the workbook and the CSV of a template."""

    def __init__(self, template: str) -> None:
        self.template = template

    async def __call__(
        self,
        pool: PoolDep,
        who: PrincipalDep,
        start: From,
        end: To,
        product: Products = None,
        basis: Basis = "consumed",
        participant: Participant = None,
        other_minerals: Other = False,
    ) -> service.Built:
        ask = _ask(self.template, start, end, product, basis, participant, other_minerals)
        return await service.build(pool, who, ask)


def _routes(template: str, label: str) -> None:
    asked = Depends(_Asked(template))

    async def as_json(b: service.Built = asked) -> export.FilingOut:
        return export.to_json(b)

    async def as_xlsx(b: service.Built = asked) -> Response:
        return _file(export.to_xlsx(b), export.XLSX_MEDIA_TYPE, _name(b, "xlsx"))

    async def as_csv(b: service.Built = asked) -> Response:
        return _file(export.to_csv(b), export.CSV_MEDIA_TYPE, _name(b, "csv"))

    what = f"Your {label} for a period, from custody data: every smelter and refiner upstream, per metal"
    add: Callable[..., Any] = router.add_api_route
    add(
        f"/filings/{template}",
        as_json,
        methods=["GET"],
        response_model=export.FilingOut,
        summary=what,
        response_model_by_alias=True,
        name=template,
    )
    add(
        f"/filings/{template}.xlsx",
        as_xlsx,
        methods=["GET"],
        response_class=Response,
        responses=_XLSX,
        summary=f"{what}, as a workbook (Smelter List, Custody evidence, Declaration)",
        name=f"{template}_workbook",
    )
    add(
        f"/filings/{template}.csv",
        as_csv,
        methods=["GET"],
        response_class=Response,
        responses=_CSV,
        summary=f"{what}, as CSV",
        name=f"{template}_rows",
    )


_routes("cmrt", "CMRT (Conflict Minerals Reporting Template: tin, tantalum, tungsten, gold)")
_routes("emrt", "EMRT (Extended Minerals Reporting Template: cobalt, copper, graphite, lithium, mica, nickel)")


# --- part R ---


def _lot_audit(request: Request) -> service.LotAudit:
    state = request.app.state
    return service.LotAudit(state.runtime.pool, state.settings.trace_max_depth, state.settings.trace_max_lots)


LotAuditDep = Annotated[service.LotAudit, Depends(_lot_audit)]


@router.get(
    "/lots/{lot_id}/responsible-share",
    response_model=shares.ResponsibleShareOut,
    summary="The share of a lot's mass responsibly produced: by origin (IRMA levels, Fairmined and CRAFT, recycled) "
    "and by the RMAP status of the smelters it passed, each with the claim it supports (physical or mass balance)",
    responses=problem_responses(404),
)
async def responsible_share(lot_id: str, audit: LotAuditDep, who: PrincipalDep) -> shares.ResponsibleShareOut:
    return await service.responsible_share(audit=audit, who=who, lot_id=lot_id)


@router.get(
    "/lots/{lot_id}/battery-passport/due-diligence",
    response_model=battery_passport.BatteryDueDiligenceOut,
    summary="A battery or component lot's supply-chain due diligence for its battery passport (EU 2023/1542): per "
    "cobalt, lithium, nickel and natural graphite upstream, origins, smelters and refiners, risks and how they were "
    "handled (docs/battery-passport.md)",
    responses=problem_responses(404),
)
async def battery_due_diligence(
    lot_id: str, audit: LotAuditDep, who: PrincipalDep
) -> battery_passport.BatteryDueDiligenceOut:
    return await service.battery_due_diligence(audit=audit, who=who, lot_id=lot_id)
