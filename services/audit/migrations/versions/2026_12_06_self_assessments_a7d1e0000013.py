"""part S: self-assessment scores projected for buyers and filings (placeholder, issue 25)

Revision ID: a7d1e0000013
Revises: a7d1e0000012
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "a7d1e0000013"
down_revision: str | None = "a7d1e0000012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
