"""The custody HTTP layer: parse, run the use case in one transaction, shape the response.

Registrations, ships and receipts first try without locks (`_unlocked_write`): read, check, then one statement
that writes only if the lot is unchanged since the read (for a registration: its id is free) and the key is new.
Anything else (a refusal, a changed lot, a taken id, a key seen before) is done again the usual way, in a
transaction under the locks.

Writes take an optional `Idempotency-Key`: the first request with a key does the work and stores its response in
the same transaction; a retry with the same key and the same body gets that response back (header
`Idempotent-Replayed: true`), a retry with another body is refused. Refusals (409) are recorded and published as
`custody.attempt.rejected` events, and stored for the key like any other answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel

from custody import repository, schemas, service
from custody.domain import LotStatus, Mineral, Refusal
from shared.auth import Principal, PrincipalDep
from shared.outbox import outbox_committed
from shared.problems import PROBLEM_JSON, InvalidInput, ProblemError, problem_responses, seq_cursor
from shared.topics import CUSTODY_EVENTS

router = APIRouter(responses=problem_responses(401, 403, 422, 503))

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retrying with the same key and body returns the first answer instead of acting twice",
    ),
]
WRITE_RESPONSES = problem_responses(404, 409)


def _json(status: int, body: Any, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return Response(orjson.dumps(body), status_code=status, media_type=media, headers=headers)


async def _write(
    request: Request,
    who: Principal,
    key: str | None,
    *,
    action: str,
    subject: str | None,
    run: Callable[[asyncpg.Connection, repository.Pending], Awaitable[dict[str, Any]]],
    model: type[BaseModel],
    status: int = 201,
    savepoint: bool = False,
    unlocked: Callable[[asyncpg.Connection, repository.Pending], Awaitable[dict[str, Any]]] | None = None,
) -> Response:
    pool: asyncpg.Pool = request.app.state.runtime.pool
    raw = await request.body()
    path: str = request.scope["path"]
    request_hash = hashlib.sha256(request.method.encode() + b" " + path.encode() + b"\n" + raw).digest()
    if unlocked is not None:
        answer = await _unlocked_write(pool, who, key, request_hash, unlocked, model, status)
        if answer is not None:
            outbox_committed()
            return answer
    async with pool.acquire() as conn, conn.transaction():
        if key is not None:
            stored = await repository.claim_idempotency_key(conn, who.subject, key, request_hash)
            if stored is not None:
                if bytes(stored["request_hash"]) != request_hash:
                    raise InvalidInput(
                        "header.Idempotency-Key",
                        "this key was used for a different request; use a new key for a new request",
                    )
                return _json(stored["status"], orjson.loads(stored["response"]), replayed=True)
        pending = repository.Pending()
        try:
            if savepoint:
                async with conn.transaction():
                    result = await run(conn, pending)
            else:
                result = await run(conn, pending)
            code, body = status, model.model_validate(result).model_dump(mode="json")
        except Refusal as refusal:
            pending = repository.Pending()  # nothing of the refused operation is written
            request_summary = orjson.loads(raw) if raw else None
            event_id = await service.record_refusal(
                conn, who, action=action, subject=subject, refusal=refusal, request=request_summary
            )
            code, body = (
                409,
                {
                    "type": f"/problems/{refusal.reason.replace('_', '-')}",
                    "title": "Refused",
                    "status": 409,
                    "detail": refusal.detail,
                    "instance": path,
                    "reason": refusal.reason,
                    "rejection_event_id": event_id,
                },
            )
        if pending:
            await repository.persist(conn, CUSTODY_EVENTS, pending, actor=who.subject, key=key, status=code, body=body)
        elif key is not None:
            await repository.store_response(conn, who.subject, key, code, body)
    outbox_committed()
    return _json(code, body)


async def _unlocked_write(
    pool: asyncpg.Pool,
    who: Principal,
    key: str | None,
    request_hash: bytes,
    run: Callable[[asyncpg.Connection, repository.Pending], Awaitable[dict[str, Any]]],
    model: type[BaseModel],
    status: int,
) -> Response | None:
    """Two round trips, no transaction block: `run` reads and checks without locks, then
    `repository.persist_unless_changed` writes everything in one statement if no lot changed meanwhile and the key is
    new. None when that did not happen (nothing was written): the caller does the request under the locks, where
    refusals are recorded and a key's stored answer replayed. With a key, a problem found here is decided there too,
    since the key may hold an earlier answer."""
    async with pool.acquire() as conn:
        pending = repository.Pending()
        try:
            result = await run(conn, pending)
        except Refusal:
            return None
        except ProblemError:
            if key is not None:
                return None
            raise
        body = model.model_validate(result).model_dump(mode="json")
        written = await repository.persist_unless_changed(
            conn,
            CUSTODY_EVENTS,
            pending,
            actor=who.subject,
            key=key,
            request_hash=request_hash,
            status=status,
            body=body,
        )
    return _json(status, body) if written else None


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
    participants: repository.ParticipantCache = request.app.state.participants
    return await _write(
        request,
        who,
        key,
        action="register",
        subject=body.lot_id,
        model=schemas.Lot,
        run=lambda conn, pending: service.register_lot(conn, who, body, pending, participants=participants),
        unlocked=lambda conn, pending: service.register_lot(
            conn, who, body, pending, lock=False, participants=participants
        ),
    )


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
    return await _write(
        request,
        who,
        key,
        action="declare_external",
        subject=body.lot_id,
        model=schemas.Lot,
        run=lambda conn, _: service.declare_external(conn, who, body),
    )


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
    return await _write(
        request,
        who,
        key,
        action="ship",
        subject=lot_id,
        model=schemas.Shipment,
        run=lambda conn, pending: service.ship(conn, who, lot_id, body, pending),
        unlocked=lambda conn, pending: service.ship(conn, who, lot_id, body, pending, lock=False),
    )


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
    return await _write(
        request,
        who,
        key,
        action="receive",
        subject=shipment_id,
        model=schemas.Shipment,
        status=200,
        run=lambda conn, pending: service.receive(conn, who, shipment_id, body, pending),
        unlocked=lambda conn, pending: service.receive(conn, who, shipment_id, body, pending, lock=False),
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
    return await _write(
        request,
        who,
        key,
        action="transform",
        subject=body.inputs[0].lot_id,
        model=schemas.Transformation,
        savepoint=True,
        run=lambda conn, _: service.transform(conn, who, body),
    )


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
    return await _write(
        request,
        who,
        key,
        action="consume",
        subject=lot_id,
        model=schemas.Consumption,
        run=lambda conn, _: service.consume(conn, who, lot_id, body),
    )


FAST_WRITES = (register_lot, declare_external, ship, receive, transform, consume)
"""Answered through `shared.fastlane` when the request is ordinary (the write path's CPU, measured in bench/)."""


# --- reads ---------------------------------------------------------------------------------------------------


def _depth(request: Request) -> int:
    return int(request.app.state.settings.trace_max_depth)


@router.get(
    "/lots/{lot_id}",
    response_model=schemas.Lot,
    tags=["lots"],
    responses=problem_responses(404),
    summary="One lot (yours, one you held, or upstream of those)",
)
async def get_lot(lot_id: str, request: Request, who: PrincipalDep) -> Response:
    async with request.app.state.runtime.pool.acquire() as conn:
        r = await service.readable_lot(conn, who, lot_id, _depth(request))
        return _json(200, schemas.Lot.model_validate(repository.lot_out(r)).model_dump(mode="json"))


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
    after = seq_cursor(cursor) or 0
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await repository.list_lots(
            conn,
            holder=None if who.is_operator else who.subject,
            custodian=custodian,
            mineral=mineral.value if mineral else None,
            status=status.value if status else None,
            after=after,
            limit=limit + 1,
        )
    page = schemas.LotPage(
        items=[schemas.Lot.model_validate(repository.lot_out(r)) for r in rows[:limit]],
        next_cursor=str(rows[limit - 1]["created_seq"]) if len(rows) > limit else None,
    )
    return _json(200, page.model_dump(mode="json"))


@router.get(
    "/lots/{lot_id}/history",
    response_model=schemas.History,
    tags=["lots"],
    responses=problem_responses(404),
    summary="Every custody event of a lot, in order, with its hash chain",
)
async def lot_history(lot_id: str, request: Request, who: PrincipalDep) -> Response:
    async with request.app.state.runtime.pool.acquire() as conn:
        result = await service.history(conn, who, lot_id, _depth(request))
    return _json(200, schemas.History.model_validate(result).model_dump(mode="json"))


@router.get(
    "/lots/{lot_id}/trace",
    response_model=schemas.Trace,
    tags=["lots"],
    responses=problem_responses(404),
    summary="The genealogy: upstream to mines and external declarations, or downstream to products",
)
async def lot_trace(
    lot_id: str, request: Request, who: PrincipalDep, direction: Literal["upstream", "downstream"] = "upstream"
) -> Response:
    async with request.app.state.runtime.pool.acquire() as conn:
        result = await service.trace(conn, who, lot_id, upstream=direction == "upstream", max_depth=_depth(request))
    # Built by the service in the documented shape; serialised directly (validating a large trace again would cost
    # a quarter of the request; tests check the shape against schemas.Trace).
    return Response(orjson.dumps(result, default=float, option=orjson.OPT_UTC_Z), media_type="application/json")
