"""Topic settings for a real cluster (issue 27): the replication factor, `min.insync.replicas` and retention come from
configuration (the options of `python -m shared.topics` and the environment), are set on new topics and reconciled on
existing ones, on the real broker (one broker: min.insync.replicas 1)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import ValidationError

from shared.topics import (
    AUDIT_FLAGS,
    CUSTODY_EVENTS,
    REGISTRY_EVENTS,
    TOPICS,
    TopicLayout,
    TopicSettings,
    delete_topics,
    main,
    physical,
    sync_topics,
    topic_configs,
)
from tests.conftest import ENV, ROOT
from tests.helpers import wait_for

THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000


@pytest.mark.parametrize(("replicas", "min_isr"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_min_insync_replicas_by_default(replicas: int, min_isr: int) -> None:
    """One broker may be lost without refusing writes, and an acknowledged write is on two replicas once there are
    three."""
    assert TopicLayout(replication_factor=replicas).configs(CUSTODY_EVENTS)["min.insync.replicas"] == str(min_isr)


def test_configs_of_a_layout() -> None:
    layout = TopicLayout(replication_factor=3, min_insync_replicas=3, retention_ms={AUDIT_FLAGS: THIRTY_DAYS_MS})
    assert layout.configs(AUDIT_FLAGS) == {
        "retention.ms": str(THIRTY_DAYS_MS),
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": "3",
    }
    assert layout.configs(CUSTODY_EVENTS)["retention.ms"] == "-1"  # the others keep everything


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        ({"replication_factor": 0}, "at least 1"),
        ({"replication_factor": 1, "min_insync_replicas": 2}, "refuse every write"),  # with acks=all
        ({"min_insync_replicas": 0}, "between 1 and the replication factor"),
        ({"retention_ms": {"custody.event": 1000}}, "unknown topics"),  # misspelt
        ({"retention_ms": {AUDIT_FLAGS: 0}}, "-1 for ever"),
        ({"retention_ms": {AUDIT_FLAGS: -2}}, "-1 for ever"),
    ],
)
def test_a_wrong_layout_is_refused(wrong: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        TopicLayout(**wrong)  # type: ignore[arg-type]


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCOC_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("MCOC_TOPIC_MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("MCOC_TOPIC_RETENTION_MS", f'{{"{AUDIT_FLAGS}": {THIRTY_DAYS_MS}}}')
    settings = TopicSettings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)
    assert settings.topic_retention_ms == {AUDIT_FLAGS: THIRTY_DAYS_MS}
    monkeypatch.setenv("MCOC_TOPIC_RETENTION_MS", '{"nope": 1}')
    with pytest.raises(ValidationError, match="unknown topics"):
        TopicSettings()


def test_empty_settings_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose file's `topics` job passes each through, empty when the shell has none."""
    for name in ("MCOC_TOPIC_REPLICATION_FACTOR", "MCOC_TOPIC_MIN_INSYNC_REPLICAS", "MCOC_TOPIC_RETENTION_MS"):
        monkeypatch.setenv(name, "")
    settings = TopicSettings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (1, None)
    assert settings.topic_retention_ms == {}


def test_the_compose_topics_job_passes_the_topic_settings_through() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    job = compose[compose.index("\n  topics:") : compose.index("\n  registry:")]
    for name in ("MCOC_TOPIC_REPLICATION_FACTOR", "MCOC_TOPIC_MIN_INSYNC_REPLICAS", "MCOC_TOPIC_RETENTION_MS"):
        assert f"{name}: ${{{name}:-}}" in job


def test_the_cli_refuses_a_wrong_layout(capsys: pytest.CaptureFixture[str]) -> None:
    """Before connecting to anything: exit 2 and why."""
    assert main(["--bootstrap", "127.0.0.1:1", "--replication-factor", "1", "--min-insync-replicas", "2"]) == 2
    assert "min.insync.replicas 2 with 1 replicas" in capsys.readouterr().err
    assert main(["--bootstrap", "127.0.0.1:1", "--retention", "audit.flags"]) == 2
    assert "TOPIC=MS" in capsys.readouterr().err


# --- on the real broker -------------------------------------------------------------------------------------------


@pytest.fixture
async def prefix(infra: None) -> AsyncIterator[str]:
    prefix = f"topicset-{uuid.uuid4().hex[:8]}."  # not test-: another session ending deletes those
    yield prefix
    await delete_topics(ENV.kafka_bootstrap, prefix)


async def reads_back(admin: AIOKafkaAdminClient, topic: str, wanted: dict[str, str]) -> None:
    async def there() -> bool:
        configs = await topic_configs(admin, topic)
        return {k: configs.get(k, (None, False))[0] for k in wanted} == wanted

    await wait_for(there, timeout_s=10, what=f"{topic} to read back as {wanted}", interval_s=0.2)


@pytest.mark.asyncio(loop_scope="session")
async def test_created_with_the_layout(prefix: str, admin: AIOKafkaAdminClient) -> None:
    layout = TopicLayout(replication_factor=1, min_insync_replicas=1, retention_ms={AUDIT_FLAGS: THIRTY_DAYS_MS})
    report = await sync_topics(ENV.kafka_bootstrap, prefix, layout)
    assert sorted(report.created) == sorted(physical(t, prefix) for t in TOPICS)
    await reads_back(admin, physical(AUDIT_FLAGS, prefix), {"retention.ms": str(THIRTY_DAYS_MS)})
    for name in TOPICS:
        await reads_back(admin, physical(name, prefix), {"min.insync.replicas": "1"})
    assert (await sync_topics(ENV.kafka_bootstrap, prefix, layout)).changed == {}  # nothing left to do


@pytest.mark.asyncio(loop_scope="session")
async def test_existing_topics_are_reconciled(
    prefix: str, admin: AIOKafkaAdminClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    custody, flags = physical(CUSTODY_EVENTS, prefix), physical(AUDIT_FLAGS, prefix)
    await sync_topics(ENV.kafka_bootstrap, prefix)  # as the local default: min.insync.replicas 1, kept for ever
    flags_configs = await topic_configs(admin, flags)
    assert flags_configs["retention.ms"][0] == "-1"

    # The environment asks for 30 days on audit.flags; the option for 3 replicas of new topics, min.insync 1.
    monkeypatch.setenv("MCOC_TOPIC_RETENTION_MS", f'{{"{AUDIT_FLAGS}": {THIRTY_DAYS_MS}}}')
    argv = ["--bootstrap", ENV.kafka_bootstrap, "--prefix", prefix, "--replication-factor", "3"]
    code = await asyncio.to_thread(main, [*argv, "--min-insync-replicas", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{flags} (3 partitions): exists; changed retention.ms -1 -> {THIRTY_DAYS_MS}" in out
    assert f"{custody} (6 partitions): exists, configs as declared; has 1 replicas, not 3" in out
    await reads_back(admin, flags, {"retention.ms": str(THIRTY_DAYS_MS), "min.insync.replicas": "1"})

    # min.insync.replicas above the topics' one replica: refused, nothing changed.
    monkeypatch.delenv("MCOC_TOPIC_RETENTION_MS")
    code = await asyncio.to_thread(main, [*argv, "--min-insync-replicas", "2"])
    assert code == 1
    assert "min.insync.replicas 2 would refuse every write" in capsys.readouterr().err
    assert (await topic_configs(admin, flags))["retention.ms"][0] == str(THIRTY_DAYS_MS)
    assert (await topic_configs(admin, custody))["min.insync.replicas"][0] == "1"

    # Back to keeping everything, from the environment alone.
    monkeypatch.setenv("MCOC_TOPIC_MIN_INSYNC_REPLICAS", "1")
    assert await asyncio.to_thread(main, ["--bootstrap", ENV.kafka_bootstrap, "--prefix", prefix]) == 0
    assert f"{flags} (3 partitions): exists; changed retention.ms {THIRTY_DAYS_MS} -> -1" in capsys.readouterr().out
    await reads_back(admin, flags, {"retention.ms": "-1"})


@pytest.mark.asyncio(loop_scope="session")
async def test_a_topic_with_another_min_insync_replicas_is_reconciled(prefix: str, admin: AIOKafkaAdminClient) -> None:
    """A topic whose min.insync.replicas an operator set otherwise (here 2 on one replica: every acks=all write
    refused) is given the configured one; its other configs stay."""
    registry = physical(REGISTRY_EVENTS, prefix)
    await admin.create_topics(
        [
            NewTopic(
                registry,
                num_partitions=TOPICS[REGISTRY_EVENTS],
                replication_factor=1,
                topic_configs={"min.insync.replicas": "2", "max.message.bytes": "2000000"},
            )
        ]
    )
    await reads_back(admin, registry, {"min.insync.replicas": "2"})
    report = await sync_topics(ENV.kafka_bootstrap, prefix, TopicLayout(min_insync_replicas=1))
    assert report.changed[registry]["min.insync.replicas"] == ("2", "1")
    await reads_back(
        admin, registry, {"min.insync.replicas": "1", "retention.ms": "-1", "max.message.bytes": "2000000"}
    )
