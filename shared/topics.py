"""The project's Kafka topics, their partition counts, and `python -m shared.topics` to create them.

The broker runs with `auto.create.topics.enable=false`, so a misspelt topic fails loudly instead of appearing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Collection

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

CUSTODY_EVENTS = "custody.events"
REGISTRY_EVENTS = "registry.events"
AUDIT_FLAGS = "audit.flags"

# name -> partitions. Keys (lot id, participant id) keep one entity's events in one partition.
TOPICS: dict[str, int] = {CUSTODY_EVENTS: 6, REGISTRY_EVENTS: 3, AUDIT_FLAGS: 3}


def physical(name: str, prefix: str = "") -> str:
    """The topic name on the broker: the logical name with the deployment's prefix."""
    return f"{prefix}{name}"


async def ensure_topics(bootstrap_servers: str, prefix: str = "", replication_factor: int = 1) -> list[str]:
    """Create any missing topic; returns the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(physical(name, prefix), num_partitions=parts, replication_factor=replication_factor)
            for name, parts in TOPICS.items()
            if physical(name, prefix) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:  # another process won the race; fine
                pass
        return [t.name for t in wanted]
    finally:
        await admin.close()


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
        + "); existing topics are left as they are. Configured by its options only (no environment variable).",
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
        created = asyncio.run(ensure_topics(args.bootstrap, args.prefix, args.replication_factor))
    except Exception as exc:  # noqa: BLE001 - a CLI: say what failed and what to do
        print(
            f"[topics] could not create topics on {args.bootstrap}: {exc!r}. "
            "Is Kafka running? Try `deploy/local/infra.sh status`.",
            file=sys.stderr,
        )
        return 1
    for name in TOPICS:
        state = "created" if physical(name, args.prefix) in created else "exists"
        print(f"[topics] {physical(name, args.prefix)} ({TOPICS[name]} partitions): {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
