"""EPCIS 2.0 query and export over HTTP: `GET /events` (the standard's SimpleEventQuery, REST binding) and
`GET /lots/{lot_id}/epcis` (a lot's history as an EPCISDocument). docs/epcis-query.md has the mapping and examples;
`custody.epcis_query` the parameters, the SQL and the pagination; `custody.epcis_export` the mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from custody import epcis_export, epcis_query, service
from shared.auth import PrincipalDep
from shared.problems import Problem, problem_responses

router = APIRouter(tags=["EPCIS 2.0"], responses=problem_responses(401, 403))

LD_JSON = "application/ld+json"
QUERY_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A query parameter unknown or out of bounds (QueryParameterException)"}
}
VERSION_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}

_EVENT_EXAMPLE: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventID": "urn:mcoc:event:EVT-3F2A9C01B7D4E5F6",
    "eventTime": "2026-11-03T08:15:00.000Z",
    "eventTimeZoneOffset": "+00:00",
    "recordTime": "2026-11-03T08:15:01.120Z",
    "action": "OBSERVE",
    "bizStep": "shipping",
    "disposition": "in_transit",
    "quantityList": [{"epcClass": "urn:mcoc:lot:m1a2:LOT-0042", "quantity": 400.0, "uom": "KGM"}],
    "sourceList": [{"type": "owning_party", "source": "urn:mcoc:party:mine-7c1e"}],
    "destinationList": [{"type": "owning_party", "destination": "https://id.gs1.org/417/4012345000009"}],
    "bizTransactionList": [{"bizTransaction": "urn:mcoc:shipment:SHP-0A1B2C3D4E5F6071"}],
    "mcoc:eventType": "custody.lot.shipped",
    "mcoc:lotID": "m1a2:LOT-0042",
    "mcoc:eventID": "EVT-3F2A9C01B7D4E5F6",
    "mcoc:seq": 2,
    "mcoc:actor": "mine-7c1e",
    "mcoc:hash": "9c1e" + "0" * 60,
    "mcoc:prevHash": "5b2d" + "0" * 60,
    "mcoc:recipe": 2,
    "mcoc:to_kind": "smelter",
    "mcoc:mineral": "cassiterite",
    "mcoc:form": "ore",
}
_CONTEXT_EXAMPLE: list[Any] = list(epcis_export.CONTEXT)
Context = list[str | dict[str, str]]


class EpcisEventList(BaseModel):
    event_list: list[dict[str, Any]] = Field(
        alias="eventList",
        description="EPCIS 2.0 events (JSON-LD); our own fields as `mcoc:` extensions (docs/epcis-query.md)",
    )


class EpcisQueryResults(BaseModel):
    query_name: Literal["SimpleEventQuery"] = Field(alias="queryName")
    results_body: EpcisEventList = Field(alias="resultsBody")


class EpcisQueryBody(BaseModel):
    query_results: EpcisQueryResults = Field(alias="queryResults")


class EpcisQueryDocument(BaseModel):
    """An EPCIS 2.0 EPCISQueryDocument: one page of a SimpleEventQuery's results."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                epcis_export.epcis_query_document([_EVENT_EXAMPLE], created=datetime(2026, 12, 6, 6, 0, tzinfo=UTC))
            ]
        }
    )

    context: Context = Field(alias="@context")
    type: Literal["EPCISQueryDocument"]
    schema_version: str = Field(alias="schemaVersion")
    creation_date: datetime = Field(alias="creationDate")
    epcis_body: EpcisQueryBody = Field(alias="epcisBody")


class EpcisLotDocument(BaseModel):
    """An EPCIS 2.0 EPCISDocument: a lot's custody history as EPCIS events."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [epcis_export.epcis_document([_EVENT_EXAMPLE], created=datetime(2026, 12, 6, 6, 0, tzinfo=UTC))]
        }
    )

    context: Context = Field(alias="@context")
    type: Literal["EPCISDocument"]
    schema_version: str = Field(alias="schemaVersion")
    creation_date: datetime = Field(alias="creationDate")
    epcis_body: EpcisEventList = Field(alias="epcisBody")


def _reads(request: Request) -> service.Reads:
    settings = request.app.state.settings
    return service.Reads(
        pool=request.app.state.runtime.pool,
        max_depth=settings.trace_max_depth,
        max_lots=settings.trace_max_lots,
        max_edges=settings.trace_max_edges,
    )


class LdJsonResponse(JSONResponse):
    """JSON-LD, as the EPCIS 2.0 REST binding answers (the OpenAPI names this media type with the model's schema)."""

    media_type = LD_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _ld_json(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return LdJsonResponse(body, headers={**VERSION_HEADERS, **(headers or {})})


_QUERY_DESCRIPTION = """The standard's SimpleEventQuery (EPCIS 2.0 REST binding). Parameters, all optional; a
parameter's values are alternatives (repeat it, or separate them with `|`), the parameters all hold:
`eventType`, `GE_eventTime`, `LT_eventTime`, `GE_recordTime`, `LT_recordTime` (RFC 3339 with an offset),
`EQ_bizStep`, `EQ_disposition` (CBV 2.0 words or their `https://ref.gs1.org/cbv/` URIs), `MATCH_epc`,
`MATCH_anyEPC`, `MATCH_epcClass` (a lot's EPC class: its GS1 Digital Link / LGTIN or `urn:mcoc:lot:<id>`; a captured
event's EPCs), `EQ_bizLocation`, `EXISTS_errorDeclaration`, `EQ_errorReason` (our corrections), `perPage` (1 to
200, default 100), `nextPageToken` (from the previous page's `Link: <...>; rel="next"` header, also given as
`GS1-Next-Page-Token`). Any other parameter is refused (400, the standard's `QueryParameterException`, naming it).

Every custody event is here, as the caller may see it in the lot's history (`GET /lots/{lot_id}/history`), and the
captured EPCIS events custody stored without applying (to their capturer, and to whoever may read a lot they name).
A page may hold fewer than `perPage` events and still have a next one."""


def _parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string", "maxLength": epcis_query.MAX_VALUE}}  # fmt: skip


_TIME = {"type": "string", "format": "date-time"}
_PARAMETERS = [
    _parameter("eventType", "ObjectEvent, TransformationEvent, ... (`|` between alternatives)"),
    _parameter("GE_eventTime", "Events that happened at or after (RFC 3339 with an offset)", _TIME),
    _parameter("LT_eventTime", "Events that happened before", _TIME),
    _parameter("GE_recordTime", "Events recorded at or after", _TIME),
    _parameter("LT_recordTime", "Events recorded before", _TIME),
    _parameter("EQ_bizStep", "CBV 2.0 business steps (word or https://ref.gs1.org/cbv/BizStep- URI)"),
    _parameter("EQ_disposition", "CBV 2.0 dispositions (word or https://ref.gs1.org/cbv/Disp- URI)"),
    _parameter("MATCH_epc", "Lots (EPC classes: Digital Link, LGTIN URN, urn:mcoc:lot:) or captured EPCs"),
    _parameter("MATCH_anyEPC", "As MATCH_epc"),
    _parameter("MATCH_epcClass", "As MATCH_epc"),
    _parameter("EQ_bizLocation", "A captured event's business location (custody events have none)"),
    _parameter("EXISTS_errorDeclaration", "Only error declarations (our corrections); the value is ignored"),
    _parameter("EQ_errorReason", "Error declarations with these reasons (did_not_occur, incorrect_data)"),
    _parameter(
        "perPage",
        "Events a page (at most)",
        {"type": "integer", "minimum": 1, "maximum": epcis_query.MAX_PER_PAGE, "default": epcis_query.DEFAULT_PER_PAGE},
    ),
    _parameter("nextPageToken", "From the previous page's `Link` header (`GS1-Next-Page-Token`)"),
]


@router.get(
    "/events",
    openapi_extra={"parameters": _PARAMETERS},
    response_model=EpcisQueryDocument,
    response_class=LdJsonResponse,
    response_description="One page of events",
    responses={**QUERY_REFUSED, **problem_responses(422)},  # 422: as every operation with parameters documents
    summary="EPCIS 2.0 events query: every custody event you may see, filtered with the standard's parameters",
    description=_QUERY_DESCRIPTION,
)
async def query_events(request: Request, who: PrincipalDep) -> Response:
    params = list(request.query_params.multi_items())
    query = epcis_query.parse(params)
    page = await epcis_query.events_page(reads=_reads(request), who=who, query=query)
    body = epcis_export.epcis_query_document(page.events, created=datetime.now(UTC))
    headers = {}
    if page.next_token is not None:
        kept = [(k, v) for k, v in params if k != "nextPageToken"] + [("nextPageToken", page.next_token)]
        headers["Link"] = f'<{request.url.path}?{urlencode(kept)}>; rel="next"'
        headers["GS1-Next-Page-Token"] = page.next_token
    return _ld_json(body, headers)


@router.get(
    "/lots/{lot_id}/epcis",
    response_model=EpcisLotDocument,
    response_class=LdJsonResponse,
    response_description="The lot's history as EPCIS events",
    responses=problem_responses(404),
    summary="A lot's custody history as an EPCIS 2.0 document (what its history shows you, as EPCIS events)",
)
async def lot_epcis(lot_id: str, request: Request, who: PrincipalDep) -> Response:
    doc = await epcis_query.lot_document(reads=_reads(request), who=who, lot_id=lot_id, now=datetime.now(UTC))
    return _ld_json(doc)
