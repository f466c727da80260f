"""`python -m audit`: serve the audit API."""

from audit.config import Settings
from audit.main import create_app
from shared.cli import entry_args
from shared.runtime import serve

DESCRIPTION = """
Serve the audit API and its dashboard (/dashboard/) over HTTP on AUDIT_HOST:AUDIT_PORT, with the audit projection and
its flags in AUDIT_DATABASE_URL. In this same process, unless turned off: the consumer of the registry's and custody's
events from Kafka (AUDIT_KAFKA_BOOTSTRAP_SERVERS) raises the flags, and a scheduled check looks for shipments overdue in
transit (both off with AUDIT_CONSUMER_ENABLED=false; `python -m audit.consumer` runs the consumer alone); the outbox
relay publishes the flags (AUDIT_RELAY_ENABLED=false: run `python -m audit.relay`). Token keys and revocations come from
the registry at AUDIT_REGISTRY_URL. Runs until SIGTERM or Ctrl-C.
"""

if __name__ == "__main__":
    entry_args("python -m audit", DESCRIPTION, Settings)
    serve(create_app, Settings())  # type: ignore[arg-type]
