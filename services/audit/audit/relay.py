"""`python -m audit.relay`: the audit outbox relay as its own process (when `AUDIT_RELAY_ENABLED=false`)."""

from audit.config import Settings
from shared.relay import run_standalone

if __name__ == "__main__":
    run_standalone(Settings())
