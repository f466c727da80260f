"""flags: evidence re-judged when reference data arrives late, with its history

(Placeholder reserved for issue 22's re-judging work; it fills upgrade/downgrade and this docstring.)

Revision ID: a7d1e0000004
Revises: a7d1e0000003
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = 'a7d1e0000004'
down_revision: str | None = 'a7d1e0000003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
