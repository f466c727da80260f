"""`python -m registry.relay`: the registry outbox relay as its own process (when `REGISTRY_RELAY_ENABLED=false`)."""

from registry.config import Settings
from shared.cli import entry_args, relay_description
from shared.relay import run_standalone
from shared.topics import REGISTRY_EVENTS

if __name__ == "__main__":
    entry_args("python -m registry.relay", relay_description(Settings, "registry", REGISTRY_EVENTS), Settings)
    run_standalone(Settings())
