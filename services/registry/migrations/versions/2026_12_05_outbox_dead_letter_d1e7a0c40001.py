"""outbox: rows the broker can never take go to a dead-letter table

(Placeholder reserved for issue 22's dead-letter work; it fills upgrade/downgrade and this docstring.)

Revision ID: d1e7a0c40001
Revises: 5a9d3e7f1c62
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = 'd1e7a0c40001'
down_revision: str | None = '5a9d3e7f1c62'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
