"""The audit consumer: `custody.events` and `registry.events` into the audit projection and its flags (and, from
`audit.decisions`, the operator's grievance triages).

Runs inside the service (`AUDIT_CONSUMER_ENABLED=true`, the default) or alone: `python -m audit.consumer`.

Any number of consumers (audit replicas, or the service beside `python -m audit.consumer`) share the topics'
partitions as one consumer group, and their batches are applied one after the other on one projection, each on the
state every batch before it left (`audit.projection.head`): together they raise exactly the flags one consumer
raises. Each holds the advisory lock `PROJECTION_LOCK_KEY` shared on its own connection while it runs;
`python -m audit.replay` takes it exclusively, so it refuses to run while any consumer runs, and a consumer started
during a replay waits for it to end.
"""

from __future__ import annotations

from collections.abc import Callable

from audit.config import Settings
from audit.live import OverdueChecker
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
    projection.writer = f"{settings.service_name}-consumer"  # as `projection_head.writer` names it
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
        lock_key=PROJECTION_LOCK_KEY,  # shared by every consumer; a replay takes it alone
        lock_shared=True,
    )


def overdue_checker(settings: Settings, may_write: Callable[[], bool]) -> OverdueChecker:
    """The scheduled check for shipments overdue in transit, beside a consumer (the service's, or one on its own)."""
    return OverdueChecker(
        settings.asyncpg_dsn,
        Projection(thresholds=settings.thresholds()),
        settings.overdue_check_s,
        grace_s=settings.overdue_grace_s,
        may_write=may_write,  # while its consumer holds the projection's lock (not during a replay)
    )


if __name__ == "__main__":
    from shared.cli import entry_args

    description = """
    Run the audit consumer alone: read the registry's and custody's events from Kafka (AUDIT_KAFKA_BOOTSTRAP_SERVERS;
    topics registry.events and custody.events with AUDIT_TOPIC_PREFIX in front, consumer group AUDIT_CONSUMER_GROUP,
    default audit) into the audit projection in AUDIT_DATABASE_URL, each event applied once, and raise the flags
    (written to the outbox; the audit service's relay, or `python -m audit.relay`, publishes them). For a deployment
    whose audit service runs with AUDIT_CONSUMER_ENABLED=false; it runs the scheduled check for shipments overdue in
    transit too (every AUDIT_OVERDUE_CHECK_S), and with AUDIT_OPS_PORT serves /metrics, /healthz and /readyz. Any
    number of these (and of audit services) share the partitions as one consumer group and raise the flags one
    consumer would; `python -m audit.replay` refuses to run while any runs. Runs until SIGTERM or Ctrl-C.
    """
    entry_args("python -m audit.consumer", description, Settings)
    settings = Settings()
    consumer = make_consumer(settings)
    run_standalone(
        consumer,
        name=f"{settings.service_name}-consumer",
        log_level=settings.log_level,
        gc_young_threshold=settings.gc_young_threshold,
        ops_port=settings.ops_port,
        beside=[overdue_checker(settings, lambda: consumer.holds_lock)],
    )
