"""The project's Kafka topics, their partition counts and retention, and `python -m shared.topics` to create them and
keep their retention as declared.

The broker runs with `auto.create.topics.enable=false`, so a misspelt topic fails loudly instead of appearing.

Retention. A topic created with the broker's defaults keeps 7 days (`log.retention.hours=168`, the same in the compose
image): a week after going live, a replay "from offset 0" would silently rebuild from the last week, and a new
consumer would never learn of older participants. So the event logs (`custody.events`, `registry.events`) and the
decisions on flags (`audit.decisions`) keep everything: `retention.ms=-1` and `retention.bytes=-1`, with
`cleanup.policy=delete` (which then deletes nothing). Not compaction: compaction keeps only the latest record of each
key, and these are logs whose every record is a fact (a lot's registration and each of its shipments share the lot's
key; a flag's acknowledgements and its resolution share the flag's), so compacting them would erase history that a
replay needs. `audit.flags` keeps everything too: a replay rebuilds the flags from the event logs but not when each was
first raised and what it said then (a rebuilt flag is raised at the replay's time), and `audit.flag.updated` keeps
the evidence it replaced; it is a small topic (a flag per so many events).

`python -m shared.topics` creates missing topics with these configs and sets them on existing ones (a topic created
before, with the broker's 7 days), printing each change; configs not declared here are left as they are. aiokafka's
admin client offers AlterConfigs (not IncrementalAlterConfigs), which replaces a topic's whole set of dynamic configs:
the topic's current dynamic configs are read first (DescribeConfigs) and sent back with ours on top.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

CUSTODY_EVENTS = "custody.events"
REGISTRY_EVENTS = "registry.events"
AUDIT_FLAGS = "audit.flags"
AUDIT_DECISIONS = "audit.decisions"  # decisions on flags (acknowledged, resolved...): a replay re-applies them

# name -> partitions. Keys (lot id, participant id, flag id) keep one entity's events in one partition.
TOPICS: dict[str, int] = {CUSTODY_EVENTS: 6, REGISTRY_EVENTS: 3, AUDIT_FLAGS: 3, AUDIT_DECISIONS: 3}

KEEP_FOREVER: dict[str, str] = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
"""Nothing is ever deleted (see the module's docstring for why not compaction)."""

# name -> the topic configs it is created with and reconciled to (see the module's docstring).
CONFIGS: dict[str, dict[str, str]] = {
    CUSTODY_EVENTS: KEEP_FOREVER,
    REGISTRY_EVENTS: KEEP_FOREVER,
    AUDIT_DECISIONS: KEEP_FOREVER,
    AUDIT_FLAGS: KEEP_FOREVER,
}

DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source of a value set on the topic itself
TOPIC_ALREADY_EXISTS = 36  # Kafka's error codes
UNKNOWN_TOPIC_OR_PARTITION = 3


@dataclass
class TopicsReport:
    """What `sync_topics` did: topics created, and configs changed on existing ones (name -> key -> (was, now))."""

    created: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)


def physical(name: str, prefix: str = "") -> str:
    """The topic name on the broker: the logical name with the deployment's prefix."""
    return f"{prefix}{name}"


async def ensure_topics(bootstrap_servers: str, prefix: str = "", replication_factor: int = 1) -> list[str]:
    """Create any missing topic with its configs and reconcile the configs of the others; returns the names created."""
    return (await sync_topics(bootstrap_servers, prefix, replication_factor)).created


async def sync_topics(bootstrap_servers: str, prefix: str = "", replication_factor: int = 1) -> TopicsReport:
    """Create any missing topic with its configs (`CONFIGS`), and set those configs on the existing ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        report = TopicsReport()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                physical(name, prefix),
                num_partitions=parts,
                replication_factor=replication_factor,
                topic_configs=dict(CONFIGS.get(name, {})),
            )
            for name, parts in TOPICS.items()
            if physical(name, prefix) not in existing
        ]
        if wanted:
            try:
                response = await admin.create_topics(wanted)
            except TopicAlreadyExistsError:  # another process won the race: reconciled below
                response = None
            errors = {e["topic"]: e for e in (response.to_object()["topic_errors"] if response is not None else [])}
            for t in wanted:
                err = errors.get(t.name)
                if err is None or err["error_code"] == 0:
                    report.created.append(t.name)
                elif err["error_code"] != TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"topic {t.name} not created: {err['error_message'] or err['error_code']}")
        others = {physical(n, prefix): cfg for n, cfg in CONFIGS.items() if physical(n, prefix) not in report.created}
        report.changed = await reconcile_configs(admin, others)
        return report
    finally:
        await admin.close()


async def topic_configs(admin: AIOKafkaAdminClient, name: str) -> dict[str, tuple[str | None, bool]]:
    """A topic's configs as the broker has them: key -> (value, set on the topic itself)."""
    resource = await _described(admin, name)
    return {e["config_names"]: (e["config_value"], _dynamic(e)) for e in resource["config_entries"]}


async def reconcile_configs(
    admin: AIOKafkaAdminClient, wanted: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, tuple[str | None, str]]]:
    """Set `wanted` (topic -> configs) on existing topics whose values differ; returns what changed. Every other
    config set on such a topic is sent back as it is (AlterConfigs replaces the topic's whole dynamic set)."""
    changed: dict[str, dict[str, tuple[str | None, str]]] = {}
    for name, configs in wanted.items():
        if not configs:
            continue
        current = await topic_configs(admin, name)
        diff = {k: (current.get(k, (None, False))[0], v) for k, v in configs.items() if current.get(k, (None,))[0] != v}
        if not diff:
            continue
        keep = {k: v for k, (v, dynamic) in current.items() if dynamic and v is not None}
        response = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, {**keep, **configs})])
        for r in response:
            for res in r.to_object()["resources"]:
                if res["error_code"]:
                    raise RuntimeError(f"topic {name}: configs not set: {res['error_message'] or res['error_code']}")
        changed[name] = diff
    return changed


async def _described(admin: AIOKafkaAdminClient, name: str, attempts: int = 20) -> dict[str, Any]:
    """The topic's DescribeConfigs answer. A topic created a moment ago (by another process) may not be known to the
    broker that answers yet (UNKNOWN_TOPIC_OR_PARTITION): asked again, a little later."""
    for attempt in range(attempts):
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        for r in responses:
            for res in r.to_object()["resources"]:
                if res["resource_name"] != name:
                    continue
                if res["error_code"] == UNKNOWN_TOPIC_OR_PARTITION and attempt < attempts - 1:
                    break
                if res["error_code"]:
                    raise RuntimeError(f"topic {name}: configs not read: {res['error_message'] or res['error_code']}")
                return dict(res)
        await asyncio.sleep(0.25)
    raise RuntimeError(f"topic {name}: the broker described no configs")


def _dynamic(entry: Mapping[str, Any]) -> bool:
    """Set on the topic itself (DescribeConfigs v1+: its source; v0: not a default)."""
    if "config_source" in entry:
        return bool(entry["config_source"] == DYNAMIC_TOPIC_CONFIG)
    return not entry.get("is_default", True)


async def delete_topics(bootstrap_servers: str, prefix: str, *, keep: Collection[str] = ()) -> list[str]:
    """Delete the topics whose names start with `prefix` (a test run's or a benchmark's own), except those in `keep`;
    returns their names. A broker keeping thousands of such topics restarts in minutes instead of seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=60000)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix) and t not in keep)
        for i in range(0, len(names), 200):
            await admin.delete_topics(names[i : i + 200], timeout_ms=60000)
        return names
    finally:
        await admin.close()


async def list_topics(bootstrap_servers: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.topics",
        description="Create the project's Kafka topics if missing ("
        + ", ".join(f"{name}: {parts} partitions" for name, parts in TOPICS.items())
        + ") with their retention, and set that retention on existing topics, printing each change ("
        + "; ".join(f"{name}: {_show(CONFIGS[name])}" for name in TOPICS if name in CONFIGS)
        + "). Other settings of existing topics are left as they are. Configured by its options only (no "
        "environment variable).",
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (default %(default)s)")
    parser.add_argument(
        "--prefix", default="", help="put this in front of every topic name (as a TOPIC_PREFIX setting)"
    )
    parser.add_argument(
        "--replication-factor", type=int, default=1, help="replicas of each new topic (default %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(sync_topics(args.bootstrap, args.prefix, args.replication_factor))
    except Exception as exc:  # noqa: BLE001 - a CLI: say what failed and what to do
        print(
            f"[topics] could not create or configure topics on {args.bootstrap}: {exc!r}. "
            "Is Kafka running? Try `deploy/local/infra.sh status`.",
            file=sys.stderr,
        )
        return 1
    for name in TOPICS:
        topic = physical(name, args.prefix)
        if topic in report.created:
            state = f"created ({_show(CONFIGS.get(name, {}))})"
        elif topic in report.changed:
            state = "exists; changed " + ", ".join(
                f"{k} {was if was is not None else '(unset)'} -> {now}"
                for k, (was, now) in report.changed[topic].items()
            )
        else:
            state = "exists, configs as declared"
        print(f"[topics] {topic} ({TOPICS[name]} partitions): {state}")
    return 0


def _show(configs: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in configs.items()) or "broker defaults"


if __name__ == "__main__":
    raise SystemExit(main())
