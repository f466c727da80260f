"""The topics keep their history (issue 22, part 4): `shared.topics` creates the event logs and the decisions topic
with retention off, and sets it on topics that exist with the broker's 7 days, as the broker reads them back.

On the code before, every topic was created with the broker's default retention and an existing one was left as it
was: a replay "from offset 0" a week after going live rebuilt from the last week."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.topics import (
    AUDIT_DECISIONS,
    AUDIT_FLAGS,
    CUSTODY_EVENTS,
    REGISTRY_EVENTS,
    TOPICS,
    delete_topics,
    main,
    physical,
    sync_topics,
    topic_configs,
)
from tests.conftest import ENV
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEVEN_DAYS_MS = str(7 * 24 * 3600 * 1000)
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


@pytest.fixture
async def prefix(infra: None) -> AsyncIterator[str]:
    prefix = f"retention-{uuid.uuid4().hex[:8]}."  # not test-: another session ending deletes those
    yield prefix
    await delete_topics(ENV.kafka_bootstrap, prefix)


async def retention(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str | None]:
    """What the broker says the topic keeps."""
    configs = await topic_configs(admin, topic)
    return {k: configs[k][0] for k in FOREVER}


async def reads_back(admin: AIOKafkaAdminClient, topic: str, wanted: dict[str, str]) -> None:
    """The broker answers with `wanted` (an altered config reaches the broker's view a moment after the controller
    took it: under load, a describe at once may still show the value before)."""

    async def there() -> bool:
        return await retention(admin, topic) == wanted

    await wait_for(there, timeout_s=10, what=f"{topic} to read back as {wanted}", interval_s=0.2)
    assert await retention(admin, topic) == wanted


async def test_new_topics_keep_everything(prefix: str, admin: AIOKafkaAdminClient) -> None:
    report = await sync_topics(ENV.kafka_bootstrap, prefix)
    assert sorted(report.created) == sorted(physical(t, prefix) for t in TOPICS)
    assert AUDIT_DECISIONS in TOPICS
    for name in (CUSTODY_EVENTS, REGISTRY_EVENTS, AUDIT_DECISIONS, AUDIT_FLAGS):
        await reads_back(admin, physical(name, prefix), FOREVER)
    assert (await sync_topics(ENV.kafka_bootstrap, prefix)).changed == {}  # nothing left to do


async def test_a_topic_created_with_seven_days_is_reconciled(
    prefix: str, admin: AIOKafkaAdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    custody = physical(CUSTODY_EVENTS, prefix)
    await admin.create_topics(
        [
            NewTopic(
                custody,
                num_partitions=TOPICS[CUSTODY_EVENTS],
                replication_factor=1,
                # as before this issue (explicitly what the broker's default gives), with a setting of an operator's
                topic_configs={"retention.ms": SEVEN_DAYS_MS, "max.message.bytes": "2000000"},
            )
        ]
    )
    assert (await retention(admin, custody))["retention.ms"] == SEVEN_DAYS_MS

    code = await asyncio.to_thread(main, ["--bootstrap", ENV.kafka_bootstrap, "--prefix", prefix])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{custody} (6 partitions): exists; changed retention.ms {SEVEN_DAYS_MS} -> -1" in out
    assert f"{physical(REGISTRY_EVENTS, prefix)} (3 partitions): created (retention.ms=-1" in out

    await reads_back(admin, custody, FOREVER)
    configs = await topic_configs(admin, custody)
    assert configs["max.message.bytes"] == ("2000000", True)  # what an operator set stays

    code = await asyncio.to_thread(main, ["--bootstrap", ENV.kafka_bootstrap, "--prefix", prefix])
    assert code == 0
    assert f"{custody} (6 partitions): exists, configs as declared" in capsys.readouterr().out
