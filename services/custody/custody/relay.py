"""`python -m custody.relay`: the custody outbox relay as its own process (when `CUSTODY_RELAY_ENABLED=false`)."""

from custody.config import Settings
from shared.relay import run_standalone

if __name__ == "__main__":
    run_standalone(Settings())
