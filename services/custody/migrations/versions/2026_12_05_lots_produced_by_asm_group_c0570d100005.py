"""lots produced by asm group

(Reserved for issue 23, part H5: fill in upgrade, downgrade and this docstring.)

Revision ID: c0570d100005
Revises: c0570d100004
Create Date: 2026-12-05 21:33:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "c0570d100005"
down_revision: str | None = "c0570d100004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
