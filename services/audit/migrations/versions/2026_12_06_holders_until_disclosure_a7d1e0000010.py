"""holders_until_disclosure (reserved for issue 24 part A: fill in or leave empty)

Revision ID: a7d1e0000010
Revises: a7d1e0000009
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "a7d1e0000010"
down_revision: str | None = "a7d1e0000009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
