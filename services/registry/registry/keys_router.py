"""The signing keys' endpoints: the public JWKS every verifier reads, and the operator's list and rotation
(`registry.keys_service`). One commit per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from registry import credentials, keys_service
from registry.config import Settings
from registry.keys_schemas import JWKS, MAX_DELAY_S, KeyList, KeyRotated
from registry.sessions import SessionDep
from shared.auth import OperatorDep
from shared.problems import problem_responses

router = APIRouter(tags=["keys"])


@router.get(
    "/.well-known/jwks.json",
    response_model=JWKS,
    response_model_exclude_none=True,
    tags=["credentials"],
    summary="Every public key that signed or will sign tokens and UNTP credentials, with its state (public): the "
    "next key before it signs, the active one, the retired ones (their tokens until `tokens_until`)",
)
async def get_jwks(session: SessionDep) -> JWKS:
    return JWKS.model_validate(await credentials.jwks(session))


@router.get(
    "/keys",
    response_model=KeyList,
    responses=problem_responses(401, 403, 503),
    summary="The signing keys, oldest first, with their state (next, active, retired) and dates (operator)",
)
async def list_keys(session: SessionDep, _: OperatorDep) -> KeyList:
    return KeyList(keys=await keys_service.list_keys(session=session))


@router.post(
    "/keys/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyRotated,
    responses=problem_responses(401, 403, 409, 422, 503),
    summary="Rotate the signing key (operator): a new key is published at once and signs from `activates_at` "
    "(REGISTRY_KEY_PUBLISH_DELAY_S later, or `?activate_in_s=`); 409 while a rotation waits",
)
async def rotate_keys(
    session: SessionDep,
    request: Request,
    _: OperatorDep,
    activate_in_s: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_DELAY_S,
            description="Seconds the new key is published before it signs; at least REGISTRY_KEY_PUBLISH_DELAY_S "
            "(the default)",
            examples=[600],
        ),
    ] = None,
) -> KeyRotated:
    settings: Settings = request.app.state.settings
    return await keys_service.rotate(
        session=session, activate_in_s=activate_in_s, min_delay_s=settings.key_publish_delay_s
    )
