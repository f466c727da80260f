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

A real cluster (`TopicLayout`, from the options of `python -m shared.topics` or the environment: `TopicSettings`).
- The replication factor of new topics (MCOC_TOPIC_REPLICATION_FACTOR, `--replication-factor`; 1 on the local broker,
  3 on a cluster). A topic's replicas are not a config: an existing topic with fewer is reported, not changed (that is
  a partition reassignment, `kafka-reassign-partitions.sh`, an operator's decision).
- `min.insync.replicas` on every topic (MCOC_TOPIC_MIN_INSYNC_REPLICAS, `--min-insync-replicas`; by default one less
  than the replication factor, at least 1 and at most 2: 3 replicas -> 2). With the producers' `acks=all` (the relay's
  producer is idempotent with acks=all), a write is acknowledged once that many replicas have it: one broker lost
  loses no acknowledged event, and writes go on; with fewer in sync the broker refuses (NotEnoughReplicas) and the
  outbox keeps the rows until it takes them again. A value above a topic's replicas would refuse every write:
  refused here before anything is changed.
- Retention per topic (MCOC_TOPIC_RETENTION_MS as JSON, `{"audit.flags": 2592000000}`, `--retention
  audit.flags=2592000000`): `retention.ms` instead of -1, for a deployment that chooses to forget (then a replay from
  offset 0 rebuilds from what is left).
These are reconciled on existing topics as retention is.

The security of the admin client (TLS, SASL) comes from `shared.kafka_security.KafkaSecurity`, with MCOC_ in front of
its settings here (MCOC_KAFKA_SECURITY_PROTOCOL...).
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
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.kafka_security import KafkaSecurity, client_kwargs, described

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


@dataclass(frozen=True)
class TopicLayout:
    """How the topics are laid out on the cluster (see the module's docstring): the replication factor of new topics,
    `min.insync.replicas` (None: derived from the replication factor) and `retention.ms` overrides (logical topic ->
    ms, -1 for ever)."""

    replication_factor: int = 1
    min_insync_replicas: int | None = None
    retention_ms: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.replication_factor < 1:
            raise ValueError(f"replication factor {self.replication_factor}: at least 1")
        if not 1 <= self.min_isr <= self.replication_factor:
            raise ValueError(
                f"min.insync.replicas {self.min_isr} with {self.replication_factor} replicas: between 1 and the "
                "replication factor (above it, the brokers refuse every write with acks=all)"
            )
        unknown = sorted(set(self.retention_ms) - set(TOPICS))
        if unknown:
            raise ValueError(f"retention of unknown topics {unknown}; the topics are {sorted(TOPICS)}")
        for name, ms in self.retention_ms.items():
            if ms < -1 or ms == 0:
                raise ValueError(f"retention of {name}: {ms} ms (-1 for ever, or a positive number of ms)")

    @property
    def min_isr(self) -> int:
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return max(1, min(2, self.replication_factor - 1))

    def configs(self, name: str) -> dict[str, str]:
        """The configs the logical topic `name` is created with and reconciled to."""
        configs = dict(CONFIGS.get(name, {}))
        if name in self.retention_ms:
            configs["retention.ms"] = str(self.retention_ms[name])
        configs["min.insync.replicas"] = str(self.min_isr)
        return configs


class TopicSettings(KafkaSecurity):
    """The environment of `python -m shared.topics` (MCOC_ in front of each name); its options win over these."""

    # empty is unset: the compose file passes each one through, empty when the shell has none
    model_config = SettingsConfigDict(env_prefix="MCOC_", extra="ignore", frozen=True, env_ignore_empty=True)

    topic_replication_factor: int = Field(1, description="Replicas of each new topic (3 on a cluster).")
    topic_min_insync_replicas: int | None = Field(
        None, description="min.insync.replicas of every topic (default: replicas - 1, at least 1, at most 2)."
    )
    topic_retention_ms: dict[str, int] = Field(
        default_factory=dict,
        description='retention.ms of the named topics instead of -1 (for ever), as JSON: {"audit.flags": 2592000000}.',
    )

    @field_validator("topic_retention_ms")
    @classmethod
    def _known(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(TOPICS))
        if unknown:
            raise ValueError(f"unknown topics {unknown}; the topics are {sorted(TOPICS)}")
        return value


DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source of a value set on the topic itself
TOPIC_ALREADY_EXISTS = 36  # Kafka's error codes
UNKNOWN_TOPIC_OR_PARTITION = 3


@dataclass
class TopicsReport:
    """What `sync_topics` did: topics created, and configs changed on existing ones (name -> key -> (was, now))."""

    created: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)  # existing topics with fewer replicas than asked


def physical(name: str, prefix: str = "") -> str:
    """The topic name on the broker: the logical name with the deployment's prefix."""
    return f"{prefix}{name}"


async def ensure_topics(
    bootstrap_servers: str,
    prefix: str = "",
    layout: TopicLayout | None = None,
    *,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create any missing topic with its configs and reconcile the configs of the others; returns the names created."""
    return (await sync_topics(bootstrap_servers, prefix, layout, security=security)).created


async def sync_topics(
    bootstrap_servers: str,
    prefix: str = "",
    layout: TopicLayout | None = None,
    *,
    security: KafkaSecurity | None = None,
) -> TopicsReport:
    """Create any missing topic with its configs (`CONFIGS` and the layout's), and set those configs on the existing
    ones. Refuses (RuntimeError, nothing changed) a `min.insync.replicas` above an existing topic's replicas."""
    layout = layout or TopicLayout()
    admin = admin_client(bootstrap_servers, security, request_timeout_ms=15000)
    await admin.start()
    try:
        report = TopicsReport()
        existing = set(await admin.list_topics())
        present = [physical(n, prefix) for n in TOPICS if physical(n, prefix) in existing]
        replicas = await _replicas(admin, present) if present else {}
        for topic, count in replicas.items():
            if count < layout.min_isr:
                raise RuntimeError(
                    f"topic {topic} has {count} replicas: min.insync.replicas {layout.min_isr} would refuse every "
                    "write (reassign its partitions to more brokers first)"
                )
        report.replicas = {t: c for t, c in replicas.items() if c < layout.replication_factor}
        wanted = [
            NewTopic(
                physical(name, prefix),
                num_partitions=parts,
                replication_factor=layout.replication_factor,
                topic_configs=layout.configs(name),
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
        others = {physical(n, prefix): layout.configs(n) for n in TOPICS if physical(n, prefix) not in report.created}
        report.changed = await reconcile_configs(admin, others)
        return report
    finally:
        await admin.close()


def admin_client(bootstrap_servers: str, security: KafkaSecurity | None, **kwargs: Any) -> AIOKafkaAdminClient:
    """An admin client with the cluster's security settings (`shared.kafka_security`)."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **kwargs, **client_kwargs(security))


async def _replicas(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Existing topic -> the fewest replicas of its partitions."""
    return {
        t["topic"]: min((len(p["replicas"]) for p in t["partitions"]), default=0)
        for t in await admin.describe_topics(topics)
        if t["topic"] in topics and not t["error_code"]
    }


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


async def delete_topics(
    bootstrap_servers: str, prefix: str, *, keep: Collection[str] = (), security: KafkaSecurity | None = None
) -> list[str]:
    """Delete the topics whose names start with `prefix` (a test run's or a benchmark's own), except those in `keep`;
    returns their names. A broker keeping thousands of such topics restarts in minutes instead of seconds."""
    admin = admin_client(bootstrap_servers, security, request_timeout_ms=60000)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix) and t not in keep)
        for i in range(0, len(names), 200):
            await admin.delete_topics(names[i : i + 200], timeout_ms=60000)
        return names
    finally:
        await admin.close()


async def list_topics(bootstrap_servers: str, *, security: KafkaSecurity | None = None) -> set[str]:
    admin = admin_client(bootstrap_servers, security, request_timeout_ms=15000)
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
        + ") with their retention and min.insync.replicas, and set them on existing topics, printing each change ("
        + "; ".join(f"{name}: {_show(CONFIGS[name])}" for name in TOPICS if name in CONFIGS)
        + "). Other settings of existing topics are left as they are. The options win over the environment: "
        "MCOC_TOPIC_REPLICATION_FACTOR, MCOC_TOPIC_MIN_INSYNC_REPLICAS, MCOC_TOPIC_RETENTION_MS (JSON, topic -> ms), "
        "and the client's security MCOC_KAFKA_SECURITY_PROTOCOL, MCOC_KAFKA_SASL_MECHANISM, MCOC_KAFKA_SASL_USERNAME, "
        "MCOC_KAFKA_SASL_PASSWORD, MCOC_KAFKA_SSL_CAFILE, MCOC_KAFKA_SSL_CERTFILE, MCOC_KAFKA_SSL_KEYFILE, "
        "MCOC_KAFKA_SSL_CHECK_HOSTNAME.",
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (default %(default)s)")
    parser.add_argument(
        "--prefix", default="", help="put this in front of every topic name (as a TOPIC_PREFIX setting)"
    )
    parser.add_argument(
        "--replication-factor", type=int, help="replicas of each new topic (MCOC_TOPIC_REPLICATION_FACTOR, default 1)"
    )
    parser.add_argument(
        "--min-insync-replicas",
        type=int,
        help="min.insync.replicas of every topic (MCOC_TOPIC_MIN_INSYNC_REPLICAS; default: replicas - 1, 1 to 2)",
    )
    parser.add_argument(
        "--retention",
        action="append",
        default=[],
        metavar="TOPIC=MS",
        help="retention.ms of a topic instead of -1 (for ever); repeatable (MCOC_TOPIC_RETENTION_MS)",
    )
    args = parser.parse_args(argv)
    try:
        settings = TopicSettings()
        retention = dict(settings.topic_retention_ms)
        for item in args.retention:
            name, sep, ms = item.partition("=")
            if not sep or not ms.lstrip("-").isdigit():
                raise ValueError(f"--retention {item!r}: TOPIC=MS")
            retention[name] = int(ms)
        layout = TopicLayout(
            replication_factor=args.replication_factor or settings.topic_replication_factor,
            min_insync_replicas=_either(args.min_insync_replicas, settings.topic_min_insync_replicas),
            retention_ms=retention,
        )
    except ValueError as exc:  # pydantic's ValidationError too
        print(f"[topics] {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(sync_topics(args.bootstrap, args.prefix, layout, security=settings))
    except Exception as exc:  # noqa: BLE001 - a CLI: say what failed and what to do
        print(
            f"[topics] could not create or configure topics on {args.bootstrap} ({described(settings)}): {exc!r}. "
            "Is Kafka running? Try `deploy/local/infra.sh status`.",
            file=sys.stderr,
        )
        return 1
    for name in TOPICS:
        topic = physical(name, args.prefix)
        if topic in report.created:
            state = f"created ({_show(layout.configs(name))})"
        elif topic in report.changed:
            state = "exists; changed " + ", ".join(
                f"{k} {was if was is not None else '(unset)'} -> {now}"
                for k, (was, now) in report.changed[topic].items()
            )
        else:
            state = "exists, configs as declared"
        if topic in report.replicas:
            state += (
                f"; has {report.replicas[topic]} replicas, not {layout.replication_factor} (not changed here: "
                "reassign its partitions)"
            )
        print(f"[topics] {topic} ({TOPICS[name]} partitions): {state}")
    return 0


def _either(option: int | None, environment: int | None) -> int | None:
    return option if option is not None else environment


def _show(configs: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in configs.items()) or "broker defaults"


if __name__ == "__main__":
    raise SystemExit(main())
