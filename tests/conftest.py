"""Fixtures on real infrastructure: the private PostgreSQL cluster and the Kafka broker that `make test` starts.

Nothing here skips: if PostgreSQL or Kafka cannot be reached the whole run stops with an error saying what to do.
Each test session gets its own databases (`<service>_test_<id>`) and its own topic prefix, so a run never touches the
data of `make run`, and two runs never see each other's events.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.topics import delete_topics, ensure_topics, list_topics

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("registry", "custody", "audit")


class TestEnv(BaseSettings):
    """Where the test infrastructure is (`MCOC_TEST_*`); the defaults are what `make test` starts."""

    __test__ = False
    model_config = SettingsConfigDict(env_prefix="MCOC_TEST_")

    pg_host: str = "127.0.0.1"
    pg_port: int = Field(5433, validation_alias="MCOC_PG_PORT")
    kafka_bootstrap: str = "127.0.0.1:9092"


ENV = TestEnv()


def pg_url(db: str, driver: str = "postgresql+asyncpg") -> str:
    return f"{driver}://postgres@{ENV.pg_host}:{ENV.pg_port}/{db}"


async def _check_postgres() -> None:
    try:
        conn = await asyncpg.connect(pg_url("postgres", "postgresql"), timeout=5)
    except Exception as exc:  # noqa: BLE001 - turned into a loud failure
        pytest.exit(
            f"PostgreSQL is not reachable at {ENV.pg_host}:{ENV.pg_port} ({exc!r}). "
            "Run the suite with `make test`, which starts it, or `deploy/local/infra.sh start`.",
            3,
        )
    await conn.close()


async def _check_kafka() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=ENV.kafka_bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        await admin.describe_cluster()
    except Exception as exc:  # noqa: BLE001 - turned into a loud failure
        pytest.exit(
            f"Kafka is not reachable at {ENV.kafka_bootstrap} ({exc!r}). "
            "Run the suite with `make test`, which starts it, or `deploy/local/infra.sh start`.",
            3,
        )
    finally:
        await admin.close()


def _migrate(service: str, url: str) -> None:
    cfg = Config(str(ROOT / "services" / service / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")


SESSION_ID = uuid.uuid4().hex[:8]
SESSION_TOPIC = re.compile(r"^test-s[0-9a-f]{8}-")  # a topic of some test session (`session_prefix`)


def session_prefix(name: str = "") -> str:
    """A topic prefix of this test session: `test-s<session>-[<name>-]<random>.`. At its end a session deletes its
    own topics and never those of another session running beside it (helpers, CI jobs)."""
    return f"test-s{SESSION_ID}-{name + '-' if name else ''}{uuid.uuid4().hex[:8]}."


def _own_topics(topics: set[str]) -> set[str]:
    return {t for t in topics if t.startswith(f"test-s{SESSION_ID}-")}


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_url("postgres", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fresh_database(service: str, purpose: str = "test") -> str:
    """A database of this test session alone (two sessions side by side never drop each other's data)."""
    name = f"{service}_{purpose}_{SESSION_ID}"
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{name}"')
    url = pg_url(name)
    await asyncio.to_thread(_migrate, service, url)  # env.py runs its own event loop
    return url


@pytest.fixture(scope="session")
async def infra() -> AsyncIterator[None]:
    """PostgreSQL and Kafka are up; otherwise the run stops here, loudly. At the end, the `test-` topics this session
    created are deleted: a broker keeping thousands of them restarts in minutes (the fault tests restart it)."""
    await _check_postgres()
    await _check_kafka()
    before = await list_topics(ENV.kafka_bootstrap)
    yield
    # This session's topics, and untagged `test-` ones it saw appear; never another running session's.
    others = {t for t in await list_topics(ENV.kafka_bootstrap) if SESSION_TOPIC.match(t)}
    await delete_topics(ENV.kafka_bootstrap, "test-", keep=before | (others - _own_topics(others)))


@asynccontextmanager
async def own_databases(purpose: str) -> AsyncIterator[dict[str, str]]:
    """Fresh, migrated `<service>_<purpose>_<session>` databases of the three services (SQLAlchemy URLs), dropped on
    the way out: the session's (`database_urls`), or those of a module whose data must not meet the others'."""
    # One after the other: Alembic's `context` is module-global state.
    urls = {s: await _fresh_database(s, purpose) for s in SERVICES}
    try:
        yield urls
    finally:
        for s in SERVICES:
            await _admin(f'DROP DATABASE IF EXISTS "{s}_{purpose}_{SESSION_ID}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_urls(infra: None) -> AsyncIterator[dict[str, str]]:
    """Fresh, migrated `<service>_test_<session>` databases (SQLAlchemy URLs), dropped at the end."""
    async with own_databases("test") as urls:
        yield urls


@pytest.fixture(scope="session")
async def topic_prefix(infra: None) -> str:
    """A prefix of this session's own topics (created here, with the project's partition counts)."""
    prefix = session_prefix()
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    return prefix


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: None) -> str:
    return ENV.kafka_bootstrap


@dataclass(frozen=True)
class RegistryProcess:
    """A registry process on this session's databases, with topics of its own prefix."""

    prefix: str
    url: str

    @property
    def common(self) -> dict[str, Any]:
        """Settings every in-process service of such a stack shares (its topics, the registry, fast refreshes)."""
        return {
            "topic_prefix": self.prefix,
            "registry_url": self.url,
            "auth_refresh_s": 1.0,
            "kafka_bootstrap_servers": ENV.kafka_bootstrap,
            "relay_poll_interval_s": 0.2,
        }


def free_port() -> int:
    """A port nobody listens on now: two test sessions side by side (helpers, CI jobs) never answer each other's
    requests with the wrong operator token."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def registry_process(
    database_urls: dict[str, str], name: str, port: int | None = None
) -> AsyncIterator[RegistryProcess]:
    """Topics `test-s<session>-<name>-<random>.*`, a registry process on `port` (a free one unless given; log
    `var/log/test-<name>-registry.log`), ready when this yields; stopped at the end."""
    from tests.helpers import spawn, stop, wait_http_ok  # helpers import nothing from here; this keeps it so

    port = port or free_port()
    prefix = session_prefix(name)
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    env = settings_env("registry", database_urls, prefix, port=port, relay_poll_interval_s=0.2)
    proc = spawn("registry", env, f"test-{name}-registry.log")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http_ok(f"{url}/readyz", proc=proc)
        yield RegistryProcess(prefix, url)
    finally:
        stop(proc)


def settings_env(service: str, database_urls: dict[str, str], topic_prefix: str, **extra: object) -> dict[str, str]:
    """Environment variables that point a service process at this session's databases and topics."""
    p = service.upper()
    env = {
        f"{p}_DATABASE_URL": database_urls[service],
        f"{p}_TOPIC_PREFIX": topic_prefix,
        f"{p}_KAFKA_BOOTSTRAP_SERVERS": ENV.kafka_bootstrap,
    }
    env.update({f"{p}_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def truncate(url: str, *tables: str) -> None:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture
async def clean_dbs(database_urls: dict[str, str]) -> dict[str, str]:
    """Empty event tables before a test that counts rows."""
    await truncate(database_urls["custody"], "outbox")
    await truncate(database_urls["registry"], "outbox")
    await truncate(database_urls["audit"], "outbox", "processed_events", "received_events")
    return database_urls


@pytest.fixture
async def fresh_prefix(infra: None) -> str:
    """Topics of this test alone, for tests that count every message on a topic."""
    prefix = session_prefix()
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    return prefix


@asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (pool, relay, workers) and talk to it over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


# For audits of the tests' fixed-date events (2026) recorded now: `backdated_origin` (an origin lot recorded more than
# AUDIT_MAX_ORIGIN_AGE_DAYS after its date) must not depend on the day the suite runs.
FIXED_DATES_AGE_DAYS = 36_500


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# The operator token of this test session: random, as `make run` makes one (the services refuse a well-known one).
# In the environment, so settings built in-process and services started as processes both read it.
OPERATOR_TOKEN = secrets.token_urlsafe(32)
for _service in SERVICES:
    os.environ[f"{_service.upper()}_ADMIN_TOKEN"] = OPERATOR_TOKEN
os.environ["MCOC_ADMIN_TOKEN"] = OPERATOR_TOKEN
os.environ.pop("MCOC_INSECURE_DEV_OPERATOR_TOKEN", None)
OPERATOR = bearer(OPERATOR_TOKEN)
