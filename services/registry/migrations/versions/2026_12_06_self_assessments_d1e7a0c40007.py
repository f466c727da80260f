"""part S: company due-diligence self-assessments (placeholder, issue 25)

Revision ID: d1e7a0c40007
Revises: d1e7a0c40006
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "d1e7a0c40007"
down_revision: str | None = "d1e7a0c40006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
