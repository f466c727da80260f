"""`python -m registry`: serve the registry API."""

from registry.config import Settings
from registry.main import create_app
from shared.cli import entry_args
from shared.runtime import serve

DESCRIPTION = """
Serve the registry API (participants, their certifications and credentials, the CAHRA areas, the token keys) over HTTP
on REGISTRY_HOST:REGISTRY_PORT, with its data in REGISTRY_DATABASE_URL. Its outbox relay publishes the registry's events
to Kafka (REGISTRY_KAFKA_BOOTSTRAP_SERVERS) from this same process, unless REGISTRY_RELAY_ENABLED=false (then run
`python -m registry.relay` beside it). Runs until SIGTERM or Ctrl-C.
"""

if __name__ == "__main__":
    entry_args("python -m registry", DESCRIPTION, Settings)
    serve(create_app, Settings())  # type: ignore[arg-type]
