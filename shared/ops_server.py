"""`/metrics`, `/healthz` and `/readyz` for a relay or a consumer run as its own process (`python -m <service>.relay`,
`python -m custody.consumer`, `python -m audit.consumer`), on `<SERVICE>_OPS_PORT`: without it such a process has
nothing Prometheus can scrape nor a probe can ask. Served by uvicorn in the process's own event loop.

`/readyz` answers 200 while every worker's `readiness()` is None, else 503 with what is wrong (the relay failing to
publish, a consumer failing or not reading from Kafka: `shared.relay`, `shared.consumer`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.web import Ready


def ops_app(name: str, workers: Sequence[tuple[str, Ready]]) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": name})

    async def readyz(request: Request) -> Response:
        checks = {label: w.readiness() or "ok" for label, w in workers}
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ok else "not_ready", "service": name, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)],
    )


class _Server(uvicorn.Server):
    """Leaves the signals to the process (its worker stops on SIGTERM, then this server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    port: int | None, name: str, workers: Sequence[tuple[str, Ready]], host: str = "0.0.0.0"
) -> AsyncIterator[None]:
    """Serve the ops routes on `port` while the block runs (nothing when `port` is None)."""
    if port is None:
        yield
        return
    config = uvicorn.Config(ops_app(name, workers), host=host, port=port, log_config=None, access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
