"""The audit consumer: `custody.events` and `registry.events` into the audit projection.

Runs inside the service (`AUDIT_CONSUMER_ENABLED=true`, the default) or alone: `python -m audit.consumer`.
"""

from __future__ import annotations

from audit.config import Settings
from audit.projection import apply_batch
from shared.consumer import EventConsumer, run_standalone
from shared.topics import CUSTODY_EVENTS, REGISTRY_EVENTS


def make_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        dsn=settings.asyncpg_dsn,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group or settings.service_name,
        topics=[CUSTODY_EVENTS, REGISTRY_EVENTS],
        topic_prefix=settings.topic_prefix,
        handler=apply_batch,
        max_records=settings.consumer_max_records,
        client_id=f"{settings.service_name}-consumer",
    )


if __name__ == "__main__":
    settings = Settings()
    run_standalone(make_consumer(settings), name=f"{settings.service_name}-consumer", log_level=settings.log_level)
