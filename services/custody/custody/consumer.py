"""The custody consumer: `registry.events` into custody's participants projection (custody never reads the
registry's tables nor calls it to decide). In the service (`CUSTODY_CONSUMER_ENABLED=true`) or `python -m
custody.consumer`."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from custody.config import Settings
from custody.repository import UPSERT_PARTICIPANT
from shared.consumer import Delivered, EventConsumer, run_standalone
from shared.topics import REGISTRY_EVENTS

PARTICIPANT_EVENTS = frozenset({"registry.participant.registered", "registry.participant.updated"})


def _identifier(p: dict[str, object], name: str) -> str | None:
    """One of the event's `identifiers` (a smelter's or refiner's `rmi_smelter_id`, a participant's `gln`), None
    when it has none."""
    ids = p.get("identifiers")
    value = ids.get(name) if isinstance(ids, dict) else None
    return value if isinstance(value, str) else None


async def apply_batch(conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
    rows = []
    for d in batch:
        if d.event.type in PARTICIPANT_EVENTS:
            p = d.event.data
            rows.append(
                (
                    p["id"],
                    p["kind"],
                    p["name"],
                    p["country"],
                    p.get("region"),
                    p.get("mining_type"),
                    int(p.get("version", 1)),
                    p.get("disclosure"),  # absent (events before policies): null, the default
                    _identifier(p, "rmi_smelter_id"),
                    _identifier(p, "gln"),  # EPCIS capture names parties by GLN
                )
            )
    if rows:
        await conn.executemany(UPSERT_PARTICIPANT, rows)


def make_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        dsn=settings.asyncpg_dsn,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security=settings,  # TLS and SASL (shared.kafka_security)
        group_id=settings.consumer_group or settings.service_name,
        topics=[REGISTRY_EVENTS],
        topic_prefix=settings.topic_prefix,
        handler=apply_batch,
        max_records=settings.consumer_max_records,
        commit_interval_s=settings.consumer_commit_interval_s,
        client_id=f"{settings.service_name}-consumer",
        server_settings=settings.pg_settings(f"{settings.service_name}-consumer"),
    )


if __name__ == "__main__":
    from shared.cli import entry_args

    description = """
    Run the custody consumer alone: read the registry's events from Kafka (CUSTODY_KAFKA_BOOTSTRAP_SERVERS; topic
    registry.events with CUSTODY_TOPIC_PREFIX in front, consumer group CUSTODY_CONSUMER_GROUP, default custody) and keep
    custody's copy of the participants in CUSTODY_DATABASE_URL, each event applied once. For a deployment whose custody
    service runs with CUSTODY_CONSUMER_ENABLED=false. Runs until SIGTERM or Ctrl-C.
    """
    entry_args("python -m custody.consumer", description, Settings)
    settings = Settings()
    run_standalone(
        make_consumer(settings),
        name=f"{settings.service_name}-consumer",
        log_level=settings.log_level,
        gc_young_threshold=settings.gc_young_threshold,
        ops_port=settings.ops_port,
    )
