"""The registry service's tables."""

from __future__ import annotations

from registry.db import Base
from shared.db import OutboxMixin


class OutboxEvent(OutboxMixin, Base):
    """Events waiting for (or already given to) Kafka; written in the same transaction as the change they record."""
