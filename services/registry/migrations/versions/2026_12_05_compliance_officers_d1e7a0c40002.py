"""compliance officers: people the operator registers to resolve flags

(Placeholder reserved for issue 22's separation-of-duties work; it fills upgrade/downgrade and this docstring.)

Revision ID: d1e7a0c40002
Revises: d1e7a0c40001
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = 'd1e7a0c40002'
down_revision: str | None = 'd1e7a0c40001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
