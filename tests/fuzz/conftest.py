"""What the fuzz stacks share."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now, for a stack's registry process: two test sessions side by side (helpers, CI
    jobs) never answer each other's requests with the wrong operator token."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
