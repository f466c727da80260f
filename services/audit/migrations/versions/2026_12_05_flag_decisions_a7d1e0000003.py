"""flags: acknowledgements per participant, responses, decisions with who, when and note

(Placeholder reserved for issue 22's separation-of-duties work; it fills upgrade/downgrade and this docstring.)

Revision ID: a7d1e0000003
Revises: a7d1e0000002
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = 'a7d1e0000003'
down_revision: str | None = 'a7d1e0000002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
