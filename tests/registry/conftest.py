"""What the registry's API tests share: a topic prefix of the module's own, and the registry app in-process on the
session's database with its relay publishing to that prefix (a module that needs other settings defines its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from registry.config import Settings
from registry.main import create_app
from shared.topics import ensure_topics
from tests.conftest import ENV, serve_in_process, session_prefix


@pytest.fixture(scope="module")
async def prefix(request: pytest.FixtureRequest) -> str:
    """Topics of this module alone, named after it (`test_coexistence` -> `...-coexistence-...`)."""
    p = session_prefix(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-"))
    await ensure_topics(ENV.kafka_bootstrap, p)
    return p


@pytest.fixture(scope="module")
async def api(database_urls: dict[str, str], prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_poll_interval_s=0.2,
    )
    async with serve_in_process(create_app(settings)) as client:
        yield client
