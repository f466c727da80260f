"""`python -m custody.relay`: the custody outbox relay as its own process (when `CUSTODY_RELAY_ENABLED=false`)."""

from custody.config import Settings
from shared.cli import entry_args, relay_description
from shared.relay import run_standalone
from shared.topics import CUSTODY_EVENTS

if __name__ == "__main__":
    entry_args("python -m custody.relay", relay_description(Settings, "custody", CUSTODY_EVENTS), Settings)
    run_standalone(Settings())
