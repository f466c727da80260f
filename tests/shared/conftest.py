"""Fixtures of the tests of `shared`: what more than one of its modules needs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import ENV


@pytest.fixture
async def admin(infra: None) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client of the test broker (topics' settings: tests/shared/test_topics_retention.py and
    test_topic_settings.py)."""
    client = AIOKafkaAdminClient(bootstrap_servers=ENV.kafka_bootstrap, request_timeout_ms=15000)
    await client.start()
    yield client
    await client.close()
