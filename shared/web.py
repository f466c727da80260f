"""What every service's HTTP app has: request ids, JSON access logs, Prometheus metrics, health and readiness."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import AIOKafkaClient
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.kafka_security import KafkaSecurity, client_kwargs
from shared.logging import request_id_var
from shared.problems import PROBLEM_JSON, install_problem_handlers
from shared.tracing import RequestTrace

log = logging.getLogger("shared.web")

REQUESTS = Counter("http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUEST_ID_HEADER = "x-request-id"


def request_id(scope: Scope) -> str:
    """The caller's `X-Request-ID` (at most 128 characters), or a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("latin-1")[:128] or uuid.uuid4().hex
    return uuid.uuid4().hex


def observe(service: str, scope: Scope, status: int, elapsed: float) -> None:
    """A finished request in the metrics and the access log (labelled by the route's path pattern)."""
    route = scope.get("route")
    path = getattr(route, "path", None) or "unmatched"
    method = scope["method"]
    REQUESTS.labels(service, method, path, str(status)).inc()
    LATENCY.labels(service, method, path).observe(elapsed)
    if path not in ("/healthz", "/metrics"):
        log.info(
            "%s %s %d",
            method,
            scope["path"],
            status,
            extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "route": path},
        )


class RequestContextMiddleware:
    """Pure ASGI (cheaper than BaseHTTPMiddleware): request id in, out and in logs; access log; metrics."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        token = request_id_var.set(rid)
        traced = RequestTrace(scope)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observe(self.service, scope, status, time.perf_counter() - start)
            request_id_var.reset(token)
            traced.end(scope, status)


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    service: str = Field(examples=["custody"])


class Readiness(BaseModel):
    status: str = Field(description="ready or not_ready", examples=["ready"])
    service: str = Field(examples=["custody"])
    checks: dict[str, str] = Field(
        description="Each dependency and `ok` or what failed", examples=[{"database": "ok", "kafka": "ok"}]
    )


Check = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """A check's answer when a part of the service (not a dependency) is not doing its work: `/readyz` says so."""


class Ready(Protocol):
    def readiness(self) -> str | None: ...


def worker_check(worker: Ready) -> Check:
    """A background worker with `readiness()` (the relay, a consumer) as a readiness check."""

    async def check() -> None:
        problem = worker.readiness()
        if problem is not None:
            raise NotReady(problem)

    return check


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return check


class KafkaCheck:
    """A metadata request to the broker (an open port is not readiness). The client is kept between calls."""

    def __init__(self, bootstrap_servers: str, security: KafkaSecurity | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security  # TLS and SASL, as the service's other Kafka clients (None: PLAINTEXT)
        self._client: AIOKafkaClient | None = None

    async def __call__(self) -> None:
        if self._client is None:
            client = AIOKafkaClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000, **client_kwargs(self.security)
            )
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self._client = client
        try:
            await self._client.fetch_all_metadata()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def health_router(service: str, checks: Callable[[], dict[str, Check]]) -> APIRouter:
    """`/healthz`, `/readyz`, `/metrics`. `checks` is called per request (the app state holds the clients)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health(status="ok", service=service)

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="Readiness: the database and Kafka are reachable, the relay publishes and the consumer reads",
        responses={
            503: {
                "content": {
                    PROBLEM_JSON: {
                        "example": {
                            "type": "/problems/not-ready",
                            "title": "Service not ready",
                            "status": 503,
                            "detail": "kafka: unreachable: KafkaConnectionError()",
                            "instance": "/readyz",
                            "readiness": "not_ready",
                            "service": "custody",
                            "checks": {"database": "ok", "kafka": "unreachable: KafkaConnectionError()"},
                        }
                    }
                },
                "description": "A dependency is unreachable: `checks` says which",
            }
        },
    )
    async def readyz() -> Response:
        results: dict[str, str] = {}

        async def run(name: str, check: Check) -> None:
            try:
                await asyncio.wait_for(check(), 3.0)
                results[name] = "ok"
            except NotReady as exc:
                results[name] = f"not ready: {exc}"[:300]
            except Exception as exc:  # noqa: BLE001 - reported in the body
                results[name] = f"unreachable: {exc!r}"[:300]

        await asyncio.gather(*(run(n, c) for n, c in checks().items()))
        ok = all(v == "ok" for v in results.values())
        body = Readiness(status="ready" if ok else "not_ready", service=service, checks=results)
        if ok:
            return JSONResponse(body.model_dump())
        problem = {
            "type": "/problems/not-ready",
            "title": "Service not ready",
            "status": 503,
            "detail": "; ".join(f"{k}: {v}" for k, v in results.items() if v != "ok"),
            "instance": "/readyz",
            "readiness": body.status,
            "service": body.service,
            "checks": body.checks,
        }
        return JSONResponse(problem, status_code=503, media_type=PROBLEM_JSON)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"example": "http_requests_total{...} 1.0"}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_common(app: FastAPI, service: str, checks: Callable[[], dict[str, Check]]) -> None:
    """Problem handlers, request-context middleware and the operations routes."""
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router(service, checks))
