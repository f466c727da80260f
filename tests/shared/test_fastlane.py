"""shared.fastlane: ordinary requests of a listed endpoint are answered by the lane, everything else by the full app,
with the same answers. No I/O: a small app with the services' problem handlers and request-context middleware."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from shared.auth import Principal, PrincipalDep, TokenVerifier
from shared.fastlane import FastLane, lanes_for
from shared.problems import Conflict
from shared.runtime import ServiceApp
from shared.web import install_common

TOKEN = "lane-admin-token"


class Shipment(BaseModel):
    to: str = Field(min_length=1)
    mass_kg: float = Field(gt=0)


router = APIRouter()
seen: list[dict[str, object]] = []


@router.post("/lots/{lot_id}/shipments", status_code=201)
async def ship(
    lot_id: str,
    body: Shipment,
    request: Request,
    who: PrincipalDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    # The full app's router sets scope["endpoint"]; the lane does not: that tells which of the two answered.
    seen.append({"lane": "endpoint" not in request.scope, "key": key, "raw": await request.body()})
    if body.to == "refuse":
        raise Conflict("refused on purpose")
    return Response(f'{{"lot": "{lot_id}", "who": "{who.subject}"}}', status_code=201, media_type="application/json")


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = ServiceApp()
    app.state.settings = SimpleNamespace(service_name="lane-test", operator_token=TOKEN)
    app.state.runtime = SimpleNamespace(verifier=TokenVerifier())
    install_common(app, "lane-test", dict)
    app.include_router(router)
    app.fast_lanes = lanes_for(router.routes, [ship])
    seen.clear()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lane")


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_an_ordinary_request_is_answered_by_the_lane(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/lots/L-1/shipments", json={"to": "b", "mass_kg": 2}, headers={**AUTH, "Idempotency-Key": "k1"}
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"lot": "L-1", "who": "operator"}
    assert r.headers["x-request-id"]
    assert seen == [{"lane": True, "key": "k1", "raw": b'{"to":"b","mass_kg":2}'}]


async def test_a_caller_request_id_is_kept(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/lots/L-1/shipments", json={"to": "b", "mass_kg": 2}, headers={**AUTH, "X-Request-ID": "r-1"}
    )
    assert r.headers["x-request-id"] == "r-1"
    assert seen[0]["lane"] is True


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, {"to": "b", "mass_kg": 2}, 401),  # no token
        ({"Authorization": "Basic abc"}, {"to": "b", "mass_kg": 2}, 401),  # not a bearer token
        ({"Authorization": "Bearer not-a-jwt"}, {"to": "b", "mass_kg": 2}, 401),
        (AUTH, {"to": "b", "mass_kg": -1}, 422),  # fails the model
        (AUTH, {"to": "b"}, 422),
        ({**AUTH, "Idempotency-Key": "k" * 201}, {"to": "b", "mass_kg": 2}, 422),  # key too long
    ],
)
async def test_what_is_out_of_the_ordinary_goes_to_the_full_app(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, object], status: int
) -> None:
    r = await client.post("/lots/L-1/shipments", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-request-id"]
    assert seen == []  # refused before the endpoint ran


async def test_a_body_that_is_not_json_goes_to_the_full_app(client: httpx.AsyncClient) -> None:
    r = await client.post("/lots/L-1/shipments", content=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert seen == []


async def test_a_browser_request_goes_to_the_full_app(client: httpx.AsyncClient) -> None:
    r = await client.post("/lots/L-1/shipments", json={"to": "b", "mass_kg": 2}, headers={**AUTH, "Origin": "http://x"})
    assert r.status_code == 201
    assert seen == [{"lane": False, "key": None, "raw": b'{"to":"b","mass_kg":2}'}]


async def test_an_error_of_the_endpoint_is_rendered_by_the_app_handlers(client: httpx.AsyncClient) -> None:
    r = await client.post("/lots/L-1/shipments", json={"to": "refuse", "mass_kg": 2}, headers=AUTH)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "refused on purpose"
    assert r.json()["instance"] == "/lots/L-1/shipments"
    assert seen[0]["lane"] is True


def test_an_endpoint_the_lane_cannot_call_is_refused_when_built() -> None:
    other = APIRouter()

    @other.post("/x")
    async def odd(body: Shipment, request: Request, who: PrincipalDep, extra: int = 0) -> Principal:
        return who

    with pytest.raises(ValueError, match="takes"):
        lanes_for(other.routes, [odd])
    with pytest.raises(ValueError, match="no POST route"):
        lanes_for(other.routes, [ship])


def test_the_lane_sits_in_front_of_the_whole_stack() -> None:
    app = ServiceApp()
    app.state.settings = SimpleNamespace(service_name="lane-test", operator_token=TOKEN)
    app.include_router(router)
    app.fast_lanes = lanes_for(router.routes, [ship])
    assert isinstance(app.build_middleware_stack(), FastLane)
