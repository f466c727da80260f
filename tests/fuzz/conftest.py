"""What the fuzz stacks share."""

from __future__ import annotations

from tests.conftest import free_port

__all__ = ["free_port"]
