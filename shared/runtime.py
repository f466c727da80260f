"""The lifespan pieces every service has: engine, sessionmaker, readiness checks, background workers."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from shared import tracing
from shared.asyncapi import EventType, asyncapi_document, asyncapi_router
from shared.auth import CredentialRefresher, KeyFetch, TokenVerifier, http_key_fetch, whoami_router
from shared.consumer import EventConsumer
from shared.db import make_engine, make_sessionmaker
from shared.fastlane import Endpoint, FastLane, Lane, lanes_for
from shared.limits import Guards, document_guards
from shared.logging import configure_logging
from shared.outbox import close_notifier, configure_notifier
from shared.problems import document_problems
from shared.process import settle_gc
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.watch import PipelineWatch, Probe, unwatch_pool, watch_pool
from shared.web import Check, KafkaCheck, database_check, install_common, worker_check

log = logging.getLogger("shared.runtime")


class Worker(Protocol):
    async def run(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Runtime:
    settings: ServiceSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    kafka_check: KafkaCheck
    verifier: TokenVerifier = field(default_factory=TokenVerifier)
    refresher: CredentialRefresher | None = None
    pool: asyncpg.Pool | None = None  # plain asyncpg, for hot paths that cannot pay the ORM's CPU
    workers: list[Worker] = field(default_factory=list)

    def checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"database": database_check(self.engine), "kafka": self.kafka_check}
        for w in self.workers:  # the relay and the consumer say whether they get on with their work
            if isinstance(w, OutboxRelay):
                checks["relay"] = worker_check(w)
            elif isinstance(w, EventConsumer):  # a service may run several (audit: its projection's, its webhooks')
                checks[f"consumer:{w.group_id or w.client_id}"] = worker_check(w)
        return checks


@asynccontextmanager
async def service_runtime(
    settings: ServiceSettings,
    extra_workers: Callable[[Runtime], Sequence[Worker]] = lambda rt: (),
    key_fetch: Callable[[Runtime], KeyFetch] | None = None,
    raw_pool: bool = False,
    probes: Sequence[Probe] = (),
) -> AsyncIterator[Runtime]:
    """Build the runtime, start the credential refresher, the outbox relay (if enabled), the pipeline's gauges
    (`shared.watch`, with the service's own `probes`) and any extra workers; stop them on exit. Token keys come from
    `key_fetch` (default: the registry's HTTP endpoints)."""
    engine = make_engine(settings)
    rt = Runtime(settings, engine, make_sessionmaker(engine), KafkaCheck(settings.kafka_bootstrap_servers, settings))
    if raw_pool:  # min_size=0: nothing connects at start-up, so a database outage is a 503, not a crash
        rt.pool = await RequestPool(
            settings.asyncpg_dsn,
            acquire_timeout=settings.db_acquire_timeout_s,
            min_size=0,
            max_size=settings.db_pool_size,
            max_inactive_connection_lifetime=300,
            server_settings=settings.pg_request_settings(settings.service_name),
            reset=_no_session_state,
        )
    watch_pool(engine, settings.service_name, "sqlalchemy")
    if rt.pool is not None:
        watch_pool(rt.pool, settings.service_name, "asyncpg")
    configure_notifier(settings.asyncpg_dsn)  # wakes a relay in another process when none leads in this one
    fetch = key_fetch(rt) if key_fetch else http_key_fetch(settings.registry_url)
    rt.refresher = CredentialRefresher(rt.verifier, fetch, settings.auth_refresh_s)
    rt.workers.append(rt.refresher)
    if settings.relay_enabled:
        rt.workers.append(OutboxRelay.from_settings(settings))
    rt.workers.append(PipelineWatch(settings.asyncpg_dsn, settings.service_name, probes))
    rt.workers.extend(extra_workers(rt))
    tasks = [asyncio.create_task(w.run(), name=type(w).__name__) for w in rt.workers]
    profiler = _start_profiler()
    try:
        yield rt
    finally:
        _write_profile(profiler)
        for w in rt.workers:
            w.stop()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=15)
            for t in pending:
                t.cancel()
        await rt.kafka_check.close()
        await close_notifier()
        unwatch_pool(engine)
        if rt.pool is not None:
            unwatch_pool(rt.pool)
            await rt.pool.close()
        await engine.dispose()


class RequestPool(asyncpg.Pool):
    """asyncpg's pool (as `asyncpg.create_pool` makes it) whose `acquire` waits at most `acquire_timeout` unless the
    caller gives a timeout: asyncpg's own default waits without end, so under overload requests queued behind the
    pool forever. The TimeoutError is answered 503 with `Retry-After` (`shared.problems`), in the app and in the
    fast lane alike. `pool.fetch()` and the like acquire through here too."""

    def __init__(self, dsn: str, *, acquire_timeout: float, **kwargs: Any) -> None:
        defaults = {"max_queries": 50000, "connection_class": asyncpg.Connection, "record_class": asyncpg.Record}
        super().__init__(dsn, loop=None, **{**defaults, **kwargs})
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default sends `RESET ALL; UNLISTEN *; ...` on every release, one more
    round trip per request; the services leave no session state on pooled connections (no SET, LISTEN, cursors or
    session locks), and asyncpg still rolls back a transaction left open before calling this."""


def _start_profiler() -> Any:
    """MCOC_PROFILE_TO=<file>: sample the whole process with pyinstrument (a dev dependency) and write a text
    report there at shutdown. Here rather than around `uvicorn.run`, which re-raises SIGTERM once it has stopped."""
    if not os.environ.get("MCOC_PROFILE_TO"):
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    return profiler


def _write_profile(profiler: Any) -> None:
    if profiler is not None:
        profiler.stop()
        show_all = os.environ.get("MCOC_PROFILE_ALL") == "1"  # every frame, not only the project's and the slow
        Path(os.environ["MCOC_PROFILE_TO"]).write_text(profiler.output_text(unicode=True, show_all=show_all))


def serve(create_app: Callable[[ServiceSettings], FastAPI], settings: ServiceSettings) -> None:
    """`python -m <service>`: JSON logs, one uvicorn worker (a second adds nothing on 2 cores)."""
    configure_logging(settings.service_name, settings.log_level)
    if problem := settings.operator_token_problem():
        print(f"[{settings.service_name}] refusing to start: {problem}", file=sys.stderr)
        raise SystemExit(2)
    tracing.configure_tracing(settings.service_name)  # only when OTEL_EXPORTER_OTLP_*ENDPOINT is set
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            loop="uvloop",
            http="httptools",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        tracing.shutdown_tracing()


def build_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[object] = (),
    extra_workers: Callable[[Runtime], Sequence[Worker]] = lambda rt: (),
    key_fetch: Callable[[Runtime], KeyFetch] | None = None,
    version: str = "0.1.0",
    events: Sequence[EventType] = (),
    raw_pool: bool = False,
    fast: Sequence[Endpoint] = (),
    probes: Sequence[Probe] = (),
) -> FastAPI:
    """A service app: lifespan with its runtime, problem+json errors, request ids, CORS for `cors_origins`, health
    and metrics routes, and with `events` the AsyncAPI document of the events it publishes at `/asyncapi.json`.
    The endpoints in `fast` (of the `routers`) are answered through `shared.fastlane` when their request is ordinary.

    Each operation's id in the OpenAPI is its endpoint function's name (`ship`, `get_lot`), so a generated client
    reads `ship(...)`, not `ship_lots__lot_id__shipments_post`; two operations with one name are a ValueError here.
    Every 4xx and 5xx answer is documented as the problem+json body it is (`shared.problems.document_problems`).

    Nothing connects at import or construction; the lifespan opens the pool and starts the workers.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if problem := settings.operator_token_problem():
            raise RuntimeError(f"{settings.service_name} refuses to start: {problem}")
        async with service_runtime(settings, extra_workers, key_fetch, raw_pool, probes) as rt:
            app.state.runtime = rt
            settle_gc(settings.gc_young_threshold)  # a 380-lot trace builds ~20,000 containers that die at once
            yield

    app = ServiceApp(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        telemetry=tracing.FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.guarded = True
    install_common(app, settings.service_name, lambda: app.state.runtime.checks())
    if settings.cors_origins:  # outermost, so refusals (401, 404, 409 problem bodies) are readable by the browser too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["X-Request-ID", "Idempotent-Replayed"],
            max_age=600,
        )
    app.include_router(whoami_router())
    for router in routers:
        app.include_router(router)  # type: ignore[arg-type]
    if events:
        catalogue = list(events)
        app.include_router(asyncapi_router(lambda: asyncapi_document(f"{title} events", version, catalogue)))
    if fast:
        routes = [route for router in routers for route in getattr(router, "routes", ())]
        app.fast_lanes = lanes_for(routes, fast)
    check_operation_ids(app)
    return app


def operation_id(route: APIRoute) -> str:
    """An operation's OpenAPI id: the name of its endpoint function."""
    return route.name


def check_operation_ids(app: FastAPI) -> None:
    """ValueError naming both routes when two operations of `app`'s OpenAPI would have the same id (FastAPI only
    warns, and a generated client then silently loses one of the two calls)."""
    seen: dict[str, str] = {}
    for route in iter_route_contexts(app.routes):  # as FastAPI's OpenAPI sees them, routers included
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        op_id = route.operation_id or route.unique_id
        endpoint = route.endpoint
        where = f"{endpoint.__module__}.{endpoint.__qualname__}" if endpoint else "?"
        for method in sorted(route.methods or ()):  # one id for every method of a route, as FastAPI gives it
            this = f"{method} {route.path_format} ({where})"
            if op_id in seen:
                raise ValueError(
                    f"two operations would have the operation id {op_id!r}: {seen[op_id]} and {this}; "
                    "rename one of the functions"
                )
            seen[op_id] = this


class ServiceApp(FastAPI):
    """FastAPI with `shared.fastlane` in front of its middleware stack for the endpoints of `fast_lanes`, and with
    `guarded` (as `build_app` makes it) `shared.limits.Guards` in front of both (body limits, write rates)."""

    fast_lanes: Sequence[Lane] = ()
    guarded: bool = False

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, built once, with its operation ids checked (routes may have been added since
        `build_app`) and its error answers as problem+json."""
        if self.openapi_schema is None:
            check_operation_ids(self)
            document = super().openapi()
            self.openapi_schema = document_problems(document_guards(document) if self.guarded else document)
        return self.openapi_schema

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.fast_lanes:
            stack = FastLane(stack, fastapi=self, service=self.state.settings.service_name, lanes=self.fast_lanes)
        if self.guarded:  # outermost: before the lane or the app reads a body or a token
            stack = Guards.from_settings(stack, fastapi=self, settings=self.state.settings)
        return stack
