"""Every service's operational surface: health, readiness, metrics, request ids, problem+json, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import audit.main
import custody.main
import registry.main
from audit.config import Settings as AuditSettings
from custody.config import Settings as CustodySettings
from registry.config import Settings as RegistrySettings
from shared.settings import ServiceSettings
from tests.conftest import serve_in_process

APPS: dict[str, tuple[Callable[..., FastAPI], type[ServiceSettings]]] = {
    "registry": (registry.main.create_app, RegistrySettings),
    "custody": (custody.main.create_app, CustodySettings),
    "audit": (audit.main.create_app, AuditSettings),
}


async def running(service: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    create_app, settings_cls = APPS[service]
    app = create_app(settings_cls(relay_enabled=False, consumer_enabled=False, **settings))
    async with serve_in_process(app) as client:
        yield client


@pytest.fixture(params=list(APPS))
async def client(
    request: pytest.FixtureRequest, database_urls: dict[str, str], topic_prefix: str, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    service = request.param
    async for c in running(
        service, database_url=database_urls[service], topic_prefix=topic_prefix, kafka_bootstrap_servers=kafka_bootstrap
    ):
        yield c


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert {"database", "kafka"} <= set(checks) and set(checks.values()) == {"ok"}
    assert set(checks) - {"database", "kafka"} <= {"relay"} | {k for k in checks if k.startswith("consumer:")}


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz")
    assert len(r.headers["x-request-id"]) == 32


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'http_requests_total{method="GET",route="/healthz"' in r.text


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/no/such/thing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 404
    assert body["type"] == "/problems/not-found"
    assert body["instance"] == "/no/such/thing"


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    r = await client.post("/healthz")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("service", list(APPS))
async def test_readyz_says_what_is_unreachable(service: str, database_urls: dict[str, str]) -> None:
    async for c in running(service, database_url=database_urls[service], kafka_bootstrap_servers="127.0.0.1:1"):
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["kafka"].startswith("unreachable")
        assert "kafka" in body["detail"]
