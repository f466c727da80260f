"""transformations: inputs and outputs stored once (n + m rows), not n x m edges

(Placeholder reserved for issue 22's transformation work; it fills upgrade/downgrade and this docstring.)

Revision ID: c0570d100002
Revises: c0570d100001
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = 'c0570d100002'
down_revision: str | None = 'c0570d100001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
