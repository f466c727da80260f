"""grievances

(Reserved for issue 23, part H6: fill in upgrade, downgrade and this docstring.)

Revision ID: a7d1e0000009
Revises: a7d1e0000008
Create Date: 2026-12-05 21:34:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "a7d1e0000009"
down_revision: str | None = "a7d1e0000008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
