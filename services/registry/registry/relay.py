"""`python -m registry.relay`: the registry outbox relay as its own process (when `REGISTRY_RELAY_ENABLED=false`)."""

from registry.config import Settings
from shared.relay import run_standalone

if __name__ == "__main__":
    run_standalone(Settings())
