"""declared origins and transit regions

(Reserved for issue 23, part H2: fill in upgrade, downgrade and this docstring.)

Revision ID: a7d1e0000005
Revises: a7d1e0000004
Create Date: 2026-12-05 21:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "a7d1e0000005"
down_revision: str | None = "a7d1e0000004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
