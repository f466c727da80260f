"""Audit's webhook subscriptions (docs/webhooks.md): parse, call the use case (`audit/webhooks_service.py`), shape the
response. No SQL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from audit import webhooks_schemas as schemas
from audit import webhooks_service as service
from shared.auth import PrincipalDep
from shared.problems import problem_responses, seq_cursor

router = APIRouter(tags=["webhooks"], responses=problem_responses(401, 403, 422, 503))


def _pool(request: Request) -> service.Pool:
    return request.app.state.runtime.pool  # type: ignore[no-any-return]


PoolDep = Annotated[service.Pool, Depends(_pool)]


@router.post(
    "/webhooks",
    status_code=201,
    response_model=schemas.WebhookCreated,
    responses=problem_responses(409),
    summary="Subscribe an https endpoint to the flags and custody events you may see; the signing secret is in this "
    "answer only",
)
async def create_webhook(
    body: schemas.WebhookCreate, pool: PoolDep, who: PrincipalDep, request: Request
) -> schemas.WebhookCreated:
    settings = request.app.state.settings
    return await service.create(
        pool=pool,
        who=who,
        body=body,
        allow_http_localhost=settings.webhook_allow_http_localhost,
        max_per_owner=settings.webhook_max_per_owner,
    )


@router.get(
    "/webhooks",
    response_model=schemas.WebhookList,
    summary="Your webhook subscriptions (the operator: everyone's), without their secrets",
)
async def list_webhooks(pool: PoolDep, who: PrincipalDep) -> schemas.WebhookList:
    return await service.list_all(pool=pool, who=who)


@router.get(
    "/webhooks/{webhook_id}",
    response_model=schemas.Webhook,
    responses=problem_responses(404),
    summary="One of your webhook subscriptions",
)
async def get_webhook(webhook_id: str, pool: PoolDep, who: PrincipalDep) -> schemas.Webhook:
    return await service.get(pool=pool, who=who, id=webhook_id)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(404),
    summary="Delete a webhook subscription and its deliveries",
)
async def delete_webhook(webhook_id: str, pool: PoolDep, who: PrincipalDep) -> Response:
    await service.delete(pool=pool, who=who, id=webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/replay",
    status_code=202,
    response_model=schemas.Replayed,
    responses=problem_responses(404),
    summary="Deliver again from the last acknowledged (2xx) delivery, or from a given delivery or time; enables a "
    "disabled subscription",
)
async def replay_webhook(
    webhook_id: str, pool: PoolDep, who: PrincipalDep, body: schemas.Replay | None = None
) -> schemas.Replayed:
    return await service.replay(pool=pool, who=who, id=webhook_id, body=body or schemas.Replay())


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=schemas.DeliveryPage,
    responses=problem_responses(404),
    summary="A subscription's deliveries, newest first, with their status and attempts",
)
async def list_webhook_deliveries(
    webhook_id: str,
    pool: PoolDep,
    who: PrincipalDep,
    status: schemas.DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.DeliveryPage:
    return await service.deliveries(
        pool=pool, who=who, id=webhook_id, status=status, before_seq=seq_cursor(cursor), limit=limit
    )
