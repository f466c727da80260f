"""The custody HTTP layer: parse, call the use case (`custody/service.py`), shape the response. No SQL, no Kafka.

Writes take an optional `Idempotency-Key`: the first request with a key does the work and stores its response in
the same transaction; a retry with the same key and the same body gets that response back (header
`Idempotent-Replayed: true`), a retry with another body is refused. Refusals (409) are recorded and published as
`custody.attempt.rejected` events, and stored for the key like any other answer. All of that is the unit of work's
(`custody/unit_of_work.py`); a route only builds the `Write` of its request.

The six writes are also answered through `shared.fastlane` when their request is ordinary (see
docs/decisions/fast-lane.md): an endpoint in the lane takes `body`, `request`, `who`, `key` and its path parameters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel

from custody import schemas, service
from custody.domain import LotStatus, Mineral
from custody.unit_of_work import Answer, Write, request_hash
from shared.auth import Principal, PrincipalDep
from shared.problems import PROBLEM_JSON, problem_responses, seq_cursor

router = APIRouter(responses=problem_responses(401, 403, 422, 503))

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,  # an empty key is no key two unrelated writes may share: 422
        max_length=200,
        description="Retrying with the same key and body returns the first answer instead of acting twice",
    ),
]
WRITE_RESPONSES = problem_responses(404, 409)


def _json(status: int, body: Any, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return Response(orjson.dumps(body), status_code=status, media_type=media, headers=headers)


def _answer(answer: Answer) -> Response:
    return _json(answer.status, answer.body, replayed=answer.replayed)


async def _write(request: Request, who: Principal, key: str | None, body: BaseModel) -> Write:
    """The write this request asks for: who, its key, the request as sent (the key is bound to it) and as validated
    (what a refusal records)."""
    raw = await request.body()
    path: str = request.scope["path"]
    state = request.app.state
    return Write(
        pool=state.runtime.pool,
        participants=state.participants,
        who=who,
        key=key,
        path=path,
        body=body,
        request_hash=request_hash(request.method, path, raw),
    )


def _reads(request: Request) -> service.Reads:
    state = request.app.state
    settings = state.settings
    return service.Reads(
        pool=state.runtime.pool,
        max_depth=settings.trace_max_depth,
        max_lots=settings.trace_max_lots,
        max_edges=settings.trace_max_edges,
    )


# --- writes --------------------------------------------------------------------------------------------------


@router.post(
    "/lots",
    status_code=201,
    response_model=schemas.Lot,
    tags=["custody operations"],
    summary="Register an origin lot (mines): its bag tag, mass and seal",
    responses=problem_responses(409),
)
async def register_lot(
    body: schemas.LotCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.register_lot(write=await _write(request, who, key, body), body=body))


@router.post(
    "/lots/external",
    status_code=201,
    response_model=schemas.Lot,
    tags=["custody operations"],
    summary="Declare material that arrived from outside the system (audit sees it as undocumented custody)",
    responses=problem_responses(409),
)
async def declare_external(
    body: schemas.ExternalDeclaration, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.declare_external(write=await _write(request, who, key, body), body=body))


@router.post(
    "/lots/recycled",
    status_code=201,
    response_model=schemas.Lot,
    tags=["custody operations"],
    summary="Register recycled or scrap material as an origin lot (recyclers; smelters and refiners taking scrap)",
    responses=problem_responses(409),
)
async def register_recycled(
    body: schemas.RecycledLotCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.register_recycled(write=await _write(request, who, key, body), body=body))


@router.post(
    "/lots/{lot_id}/shipments",
    status_code=201,
    response_model=schemas.Shipment,
    tags=["custody operations"],
    summary="Ship a lot you hold to another participant",
    responses=WRITE_RESPONSES,
)
async def ship(
    lot_id: str, body: schemas.ShipmentCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.ship(write=await _write(request, who, key, body), lot_id=lot_id, body=body))


@router.post(
    "/shipments/{shipment_id}/receipt",
    status_code=200,
    response_model=schemas.Shipment,
    tags=["custody operations"],
    summary="Receive a shipment addressed to you: you become the custodian",
    responses=WRITE_RESPONSES,
)
async def receive(
    shipment_id: str, body: schemas.ReceiptCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(
        await service.receive(write=await _write(request, who, key, body), shipment_id=shipment_id, body=body)
    )


@router.post(
    "/transformations",
    status_code=201,
    response_model=schemas.Transformation,
    tags=["custody operations"],
    summary="Transform lots you hold (smelt, refine, alloy, split, merge...)",
    responses=WRITE_RESPONSES,
)
async def transform(
    body: schemas.TransformationCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.transform(write=await _write(request, who, key, body), body=body))


@router.post(
    "/lots/{lot_id}/consumptions",
    status_code=201,
    response_model=schemas.Consumption,
    tags=["custody operations"],
    summary="Consume (part of) a lot you hold into a product",
    responses=WRITE_RESPONSES,
)
async def consume(
    lot_id: str, body: schemas.ConsumptionCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.consume(write=await _write(request, who, key, body), lot_id=lot_id, body=body))


@router.post(
    "/lots/{lot_id}/origin-confirmation",
    status_code=200,
    response_model=schemas.OriginConfirmation,
    tags=["custody operations"],
    summary="Confirm or dispute a declaration from outside the system that names you (a registered mine) as the origin",
    responses=problem_responses(404),
)
async def confirm_origin(
    lot_id: str,
    body: schemas.OriginConfirmationCreate,
    request: Request,
    who: PrincipalDep,
    key: IdempotencyKey = None,
) -> Response:
    return _answer(await service.confirm_origin(write=await _write(request, who, key, body), lot_id=lot_id, body=body))


@router.post(
    "/products",
    status_code=201,
    response_model=schemas.Product,
    tags=["products"],
    summary="Register a product (its SKU as the id, a name, a GTIN where known); consumptions name it",
    responses=problem_responses(409),
)
async def register_product(
    body: schemas.ProductCreate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(await service.register_product(write=await _write(request, who, key, body), body=body))


@router.patch(
    "/products/{product_id}",
    status_code=200,
    response_model=schemas.Product,
    tags=["products"],
    summary="Change your product's name, GTIN or description",
    responses=problem_responses(404, 409),
)
async def update_product(
    product_id: str, body: schemas.ProductUpdate, request: Request, who: PrincipalDep, key: IdempotencyKey = None
) -> Response:
    return _answer(
        await service.update_product(write=await _write(request, who, key, body), product_id=product_id, body=body)
    )


FAST_WRITES = (register_lot, declare_external, ship, receive, transform, consume)
"""Answered through `shared.fastlane` when the request is ordinary (the write path's CPU, measured in bench/)."""


# --- reads ---------------------------------------------------------------------------------------------------


@router.get(
    "/lots/{lot_id}",
    response_model=schemas.Lot,
    tags=["lots"],
    responses=problem_responses(404),
    summary="One lot (yours, one you held, or upstream of those)",
)
async def get_lot(lot_id: str, request: Request, who: PrincipalDep) -> Response:
    lot = await service.get_lot(reads=_reads(request), who=who, lot_id=lot_id)
    return _json(200, schemas.Lot.model_validate(lot).model_dump(mode="json"))


@router.get(
    "/lots",
    response_model=schemas.LotPage,
    tags=["lots"],
    summary="Lots you hold or held (the operator sees all), oldest first, cursor-paginated",
)
async def list_lots(
    request: Request,
    who: PrincipalDep,
    custodian: str | None = None,
    mineral: Mineral | None = None,
    status: LotStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> Response:
    page = await service.list_lots(
        reads=_reads(request),
        who=who,
        custodian=custodian,
        mineral=mineral.value if mineral else None,
        status=status.value if status else None,
        after=seq_cursor(cursor) or 0,
        limit=limit,
    )
    return _json(200, page.model_dump(mode="json"))


@router.get(
    "/lots/{lot_id}/history",
    response_model=schemas.History,
    tags=["lots"],
    responses=problem_responses(404),
    summary="Every custody event of a lot, in order, with its hash chain",
)
async def history(lot_id: str, request: Request, who: PrincipalDep) -> Response:
    result = await service.history(reads=_reads(request), who=who, lot_id=lot_id)
    return _json(200, schemas.History.model_validate(result).model_dump(mode="json"))


@router.get(
    "/lots/{lot_id}/trace",
    response_model=schemas.Trace,
    tags=["lots"],
    responses=problem_responses(404),
    summary="The genealogy: upstream to mines and external declarations, or downstream to products",
)
async def trace(
    lot_id: str, request: Request, who: PrincipalDep, direction: Literal["upstream", "downstream"] = "upstream"
) -> Response:
    result = await service.trace(reads=_reads(request), who=who, lot_id=lot_id, upstream=direction == "upstream")
    # Built by the service in the documented shape; serialised directly (validating a large trace again would cost
    # a quarter of the request; tests check the shape against schemas.Trace).
    return Response(orjson.dumps(result, default=float, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get(
    "/products",
    response_model=schemas.ProductPage,
    tags=["products"],
    summary="Your products (the operator and regulators: everyone's, or `owner`'s), oldest first, cursor-paginated",
)
async def list_products(
    request: Request,
    who: PrincipalDep,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> Response:
    page = await service.list_products(
        reads=_reads(request), who=who, owner=owner, after=seq_cursor(cursor) or 0, limit=limit
    )
    return _json(200, page.model_dump(mode="json"))


@router.get(
    "/products/{product_id}",
    response_model=schemas.Product,
    tags=["products"],
    responses=problem_responses(404),
    summary="One product (yours; the operator and regulators: any)",
)
async def get_product(product_id: str, request: Request, who: PrincipalDep) -> Response:
    product = await service.get_product(reads=_reads(request), who=who, product_id=product_id)
    return _json(200, schemas.Product.model_validate(product).model_dump(mode="json"))
