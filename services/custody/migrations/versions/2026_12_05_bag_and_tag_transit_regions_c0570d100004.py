"""bag and tag transit regions

(Reserved for issue 23, part H3: fill in upgrade, downgrade and this docstring.)

Revision ID: c0570d100004
Revises: c0570d100003
Create Date: 2026-12-05 21:31:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "c0570d100004"
down_revision: str | None = "c0570d100003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
