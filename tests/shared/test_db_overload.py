"""Overload of the database is answered 503 with `Retry-After`, never queued without end nor a 500: a pool that stays
busy past `db_acquire_timeout_s` (the asyncpg pool and SQLAlchemy's), a statement past `db_statement_timeout_ms`, a
lock wait past `db_lock_timeout_ms`; through the app and through the fast lane. On the real database: an app built
by `shared.runtime.build_app` with a pool of one connection and short timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header, Request
from pydantic import BaseModel
from sqlalchemy import text

from shared.auth import PrincipalDep
from shared.db import unit_of_work
from shared.problems import PROBLEM_JSON, ServiceUnavailable
from shared.runtime import Runtime, build_app
from shared.settings import DEV_OPERATOR_TOKEN, ServiceSettings, asyncpg_dsn
from tests.conftest import OPERATOR, serve_in_process

ACQUIRE_TIMEOUT_S = 0.5
STATEMENT_TIMEOUT_MS = 300
LOCK_TIMEOUT_MS = 200
LOCK_KEY = 27_0027  # an advisory lock of this test's alone
AUTH = {"Authorization": f"Bearer {DEV_OPERATOR_TOKEN}"}
Served = tuple[FastAPI, httpx.AsyncClient]

router = APIRouter()


def runtime(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


async def query(request: Request, via: str, sql: str) -> Any:
    """One statement in a transaction, on the asyncpg pool (`via=pool`) or through the ORM (`via=orm`)."""
    rt = runtime(request)
    if via == "pool":
        assert rt.pool is not None
        async with rt.pool.acquire() as conn, conn.transaction():
            return await conn.fetchval(sql)
    async with unit_of_work(rt.sessionmaker) as session:
        return (await session.execute(text(sql))).scalar()


@router.get("/hold")
async def hold(request: Request) -> dict[str, bool]:
    """Takes the asyncpg pool's one connection until the test lets go."""
    pool = runtime(request).pool
    assert pool is not None
    async with pool.acquire() as conn:
        await conn.execute("SELECT 1")
        request.app.state.holding.set()
        await request.app.state.release.wait()
    return {"held": True}


@router.get("/one")
async def one(request: Request, via: str) -> dict[str, Any]:
    return {"one": await query(request, via, "SELECT 1")}


@router.get("/sleep")
async def sleep(request: Request, via: str) -> dict[str, Any]:
    return {"slept": await query(request, via, "SELECT pg_sleep(2)::text")}


@router.get("/lock")
async def lock(request: Request, via: str) -> dict[str, Any]:
    return {"locked": await query(request, via, f"SELECT pg_advisory_xact_lock({LOCK_KEY})::text")}


@router.get("/timeouts")
async def timeouts(request: Request, via: str) -> dict[str, Any]:
    return {
        "statement_timeout": await query(request, via, "SHOW statement_timeout"),
        "lock_timeout": await query(request, via, "SHOW lock_timeout"),
    }


@router.get("/unavailable")
async def unavailable() -> None:
    raise ServiceUnavailable("the export took longer than 30 s to build; retry in a few seconds")


class Shipment(BaseModel):
    to: str


lane_seen: list[bool] = []


@router.post("/lots/{lot_id}/shipments", status_code=201)
async def ship(
    lot_id: str,
    body: Shipment,
    request: Request,
    who: PrincipalDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> dict[str, Any]:
    lane_seen.append("endpoint" not in request.scope)  # the full app's router sets it; the lane does not
    return {"slept": await query(request, "pool", "SELECT pg_sleep(2)::text")}


async def no_keys() -> tuple[dict[str, Any], set[str]]:
    return {"keys": []}, set()


@pytest.fixture(scope="module")
async def served(database_urls: dict[str, str], kafka_bootstrap: str) -> AsyncIterator[Served]:
    settings = ServiceSettings(
        service_name="overload-test",
        database_url=database_urls["registry"],
        kafka_bootstrap_servers=kafka_bootstrap,
        db_pool_size=1,
        db_acquire_timeout_s=ACQUIRE_TIMEOUT_S,
        db_statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        db_lock_timeout_ms=LOCK_TIMEOUT_MS,
        relay_enabled=False,
        insecure_dev_operator_token=True,
    )
    app = build_app(
        settings,
        title="overload",
        description="overload test",
        routers=[router],
        key_fetch=lambda rt: no_keys,
        raw_pool=True,
        fast=[ship],
    )
    async with serve_in_process(app) as client:
        yield app, client


def assert_overloaded(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.headers["retry-after"] == "2"
    body = r.json()
    assert body["type"] == "/problems/service-unavailable"
    assert "retry in a few seconds" in body["detail"].lower()


@pytest.mark.parametrize("via", ["pool", "orm"])
async def test_the_settings_reach_every_connection_requests_use(served: Served, via: str) -> None:
    _, client = served
    r = await client.get("/timeouts", params={"via": via})
    assert r.status_code == 200, r.text
    assert r.json() == {"statement_timeout": f"{STATEMENT_TIMEOUT_MS}ms", "lock_timeout": f"{LOCK_TIMEOUT_MS}ms"}


async def test_a_request_behind_a_busy_asyncpg_pool_answers_503_within_the_acquire_timeout(
    served: Served,
) -> None:
    app, client = served
    app.state.holding, app.state.release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(client.get("/hold"))
    try:
        await asyncio.wait_for(app.state.holding.wait(), 5)
        start = time.perf_counter()
        r = await asyncio.wait_for(client.get("/one", params={"via": "pool"}), 5)  # not queued without end
        waited = time.perf_counter() - start
        assert_overloaded(r)
        assert ACQUIRE_TIMEOUT_S * 0.9 <= waited < ACQUIRE_TIMEOUT_S + 1.5
    finally:
        app.state.release.set()
        assert (await holder).status_code == 200
    r = await client.get("/one", params={"via": "pool"})  # the pool serves again once the connection is back
    assert r.status_code == 200 and r.json() == {"one": 1}


async def test_a_request_behind_a_busy_engine_answers_503_within_the_acquire_timeout(
    served: Served,
) -> None:
    app, client = served
    engine = app.state.runtime.engine
    size = 2 * app.state.settings.db_pool_size  # every connection the engine may open (its overflow is its size)
    held = [await engine.connect() for _ in range(size)]
    try:
        for conn in held:
            await conn.execute(text("SELECT 1"))
        start = time.perf_counter()
        r = await asyncio.wait_for(client.get("/one", params={"via": "orm"}), 5)
        waited = time.perf_counter() - start
        assert_overloaded(r)
        assert ACQUIRE_TIMEOUT_S * 0.9 <= waited < ACQUIRE_TIMEOUT_S + 1.5
    finally:
        for conn in held:
            await conn.close()
    r = await client.get("/one", params={"via": "orm"})
    assert r.status_code == 200 and r.json() == {"one": 1}


@pytest.mark.parametrize("via", ["pool", "orm"])
async def test_a_statement_past_the_statement_timeout_answers_503(served: Served, via: str) -> None:
    _, client = served
    start = time.perf_counter()
    r = await client.get("/sleep", params={"via": via})
    assert time.perf_counter() - start < 1.5  # canceled at 0.3 s, not slept for 2
    assert_overloaded(r)
    assert "statement timeout" in r.json()["detail"]


@pytest.mark.parametrize("via", ["pool", "orm"])
async def test_a_lock_held_by_another_transaction_answers_503(
    served: Served, database_urls: dict[str, str], via: str
) -> None:
    _, client = served
    other = await asyncpg.connect(asyncpg_dsn(database_urls["registry"]))
    try:
        async with other.transaction():
            await other.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
            r = await client.get("/lock", params={"via": via})
        assert_overloaded(r)
        assert "lock" in r.json()["detail"]
    finally:
        await other.close()
    r = await client.get("/lock", params={"via": via})  # nobody holds it now
    assert r.status_code == 200, r.text


async def test_the_fast_lane_answers_a_statement_timeout_503(served: Served) -> None:
    _, client = served
    lane_seen.clear()
    r = await client.post("/lots/L1/shipments", json={"to": "anyone"}, headers=AUTH)
    assert lane_seen == [True]  # answered by the lane, not the full app
    assert_overloaded(r)
    assert "statement timeout" in r.json()["detail"]


async def test_a_service_unavailable_problem_says_when_to_retry(served: Served) -> None:
    """Code that answers its own timeout (the CMRT export's `SET LOCAL statement_timeout`) with `ServiceUnavailable`
    gets the same `Retry-After` as the handlers."""
    _, client = served
    assert_overloaded(await client.get("/unavailable"))


SERVICE_READS = {"registry": "/participants", "custody": "/lots", "audit": "/flags"}


@pytest.mark.parametrize("service", list(SERVICE_READS))
async def test_each_service_answers_503_when_its_connections_stay_busy(
    service: str, database_urls: dict[str, str], topic_prefix: str, kafka_bootstrap: str
) -> None:
    """The real apps: their pools have the timeouts, and a read behind connections that stay busy answers 503 with
    `Retry-After` within the acquire timeout, then 200 once they are back."""
    from tests.services.test_operations import APPS

    create_app, settings_cls = APPS[service]
    settings = settings_cls(
        database_url=database_urls[service],
        topic_prefix=topic_prefix,
        kafka_bootstrap_servers=kafka_bootstrap,
        relay_enabled=False,
        consumer_enabled=False,
        db_pool_size=1,
        db_acquire_timeout_s=ACQUIRE_TIMEOUT_S,
        db_statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        db_lock_timeout_ms=LOCK_TIMEOUT_MS,
    )
    app = create_app(settings)
    path = SERVICE_READS[service]
    async with serve_in_process(app) as client:
        rt = app.state.runtime
        expected = [f"{STATEMENT_TIMEOUT_MS}ms", f"{LOCK_TIMEOUT_MS}ms"]
        async with rt.engine.connect() as conn:
            shown = [(await conn.execute(text(f"SHOW {s}"))).scalar() for s in ("statement_timeout", "lock_timeout")]
            assert shown == expected
        if rt.pool is not None:
            async with rt.pool.acquire() as raw:
                assert [await raw.fetchval(f"SHOW {s}") for s in ("statement_timeout", "lock_timeout")] == expected
        assert (await client.get(path, headers=OPERATOR)).status_code == 200
        engine_held = [await rt.engine.connect() for _ in range(2 * settings.db_pool_size)]
        pool_held = [await rt.pool.acquire() for _ in range(settings.db_pool_size)] if rt.pool is not None else []
        try:
            for conn in engine_held:
                await conn.execute(text("SELECT 1"))
            start = time.perf_counter()
            r = await asyncio.wait_for(client.get(path, headers=OPERATOR), 5)
            assert time.perf_counter() - start < ACQUIRE_TIMEOUT_S + 1.5
            assert_overloaded(r)
        finally:
            for conn in engine_held:
                await conn.close()
            for raw in pool_held:
                await rt.pool.release(raw)
        assert (await client.get(path, headers=OPERATOR)).status_code == 200
