"""The audit consumer: `custody.events` and `registry.events` into the audit projection and its flags (and, from
`audit.decisions`, the operator's grievance triages).

Runs inside the service (`AUDIT_CONSUMER_ENABLED=true`, the default) or alone: `python -m audit.consumer`.

The projection has one writer: the consumer holds a session-level advisory lock (`PROJECTION_LOCK_KEY`) on its own
connection while it runs, and `python -m audit.replay` takes the same lock and refuses to run while it is held. A
second live consumer on the same database (a second audit replica, or the service beside `python -m audit.consumer`)
waits for the lock without joining the consumer group and takes over when the first one's connection ends: until
audit reads as a consumer group of several members (issue 27), one writer at a time is what keeps its in-memory state
true.
"""

from __future__ import annotations

from collections.abc import Callable

from audit.config import Settings
from audit.projection import Projection
from shared.consumer import EventConsumer, run_standalone
from shared.topics import AUDIT_DECISIONS, CUSTODY_EVENTS, REGISTRY_EVENTS

PROJECTION_LOCK_KEY = 0x6D636F63_61756470  # "mcocaudp": held by the projection's one writer (consumer or replay)


def make_consumer(
    settings: Settings,
    projection: Projection | None = None,
    after_commit: Callable[[], None] | None = None,
    group_id: str | None = None,
) -> EventConsumer:
    projection = projection or Projection(thresholds=settings.thresholds())
    return EventConsumer(
        dsn=settings.asyncpg_dsn,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security=settings,  # TLS and SASL (shared.kafka_security)
        group_id=group_id or settings.consumer_group or settings.service_name,
        # audit.decisions: the operator's grievance triages raise flags (`handlers.grievances`); flag decisions there
        # are kept as received and ask nothing of the projection
        topics=[REGISTRY_EVENTS, CUSTODY_EVENTS, AUDIT_DECISIONS],
        topic_prefix=settings.topic_prefix,
        handler=projection.apply_batch,
        stage=projection.stage_batch,  # a small batch in one statement (a live trickle: a flag milliseconds sooner)
        max_records=settings.consumer_max_records,
        commit_interval_s=settings.consumer_commit_interval_s,
        client_id=f"{settings.service_name}-consumer",
        server_settings=settings.pg_settings(f"{settings.service_name}-consumer"),
        after_commit=after_commit,
        on_abort=projection.discard,  # its in-memory state follows the tables only through committed batches
        first_topics=[REGISTRY_EVENTS],  # reference data before the custody events recorded after it, as a replay
        lock_key=PROJECTION_LOCK_KEY,  # one writer of the projection; a replay refuses while it is held
    )


if __name__ == "__main__":
    from shared.cli import entry_args

    description = """
    Run the audit consumer alone: read the registry's and custody's events from Kafka (AUDIT_KAFKA_BOOTSTRAP_SERVERS;
    topics registry.events and custody.events with AUDIT_TOPIC_PREFIX in front, consumer group AUDIT_CONSUMER_GROUP,
    default audit) into the audit projection in AUDIT_DATABASE_URL, each event applied once, and raise the flags
    (written to the outbox; the audit service's relay, or `python -m audit.relay`, publishes them). For a deployment
    whose audit service runs with AUDIT_CONSUMER_ENABLED=false; the scheduled check for shipments overdue in transit is
    not run here. Holds the projection's writer lock while it runs (a second consumer on the same database waits for
    it; `python -m audit.replay` refuses to run). Runs until SIGTERM or Ctrl-C.
    """
    entry_args("python -m audit.consumer", description, Settings)
    settings = Settings()
    run_standalone(
        make_consumer(settings),
        name=f"{settings.service_name}-consumer",
        log_level=settings.log_level,
        gc_young_threshold=settings.gc_young_threshold,
    )
