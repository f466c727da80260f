"""holders_until (reserved for issue 24 part D: fill in or leave empty)

Revision ID: c0570d100009
Revises: c0570d100008
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "c0570d100009"
down_revision: str | None = "c0570d100008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
