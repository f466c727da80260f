"""`python -m custody`: serve the custody API."""

from custody.config import Settings
from custody.main import create_app
from shared.cli import entry_args
from shared.runtime import serve

DESCRIPTION = """
Serve the custody API (lots, shipments and receipts, transformations, consumptions, histories and traces) over HTTP on
CUSTODY_HOST:CUSTODY_PORT, with its data in CUSTODY_DATABASE_URL. In this same process, unless turned off: the outbox
relay publishes the custody events to Kafka (CUSTODY_KAFKA_BOOTSTRAP_SERVERS; CUSTODY_RELAY_ENABLED=false: run `python
-m custody.relay`), and the consumer of the registry's events keeps custody's copy of the participants
(CUSTODY_CONSUMER_ENABLED=false: run `python -m custody.consumer`). Token keys and revocations come from the registry at
CUSTODY_REGISTRY_URL. Runs until SIGTERM or Ctrl-C.
"""

if __name__ == "__main__":
    entry_args("python -m custody", DESCRIPTION, Settings)
    serve(create_app, Settings())  # type: ignore[arg-type]
