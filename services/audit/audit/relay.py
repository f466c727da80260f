"""`python -m audit.relay`: the audit outbox relay as its own process (when `AUDIT_RELAY_ENABLED=false`)."""

from audit.config import Settings
from shared.cli import entry_args, relay_description
from shared.relay import run_standalone
from shared.topics import AUDIT_FLAGS

if __name__ == "__main__":
    entry_args("python -m audit.relay", relay_description(Settings, "audit", AUDIT_FLAGS), Settings)
    run_standalone(Settings())
