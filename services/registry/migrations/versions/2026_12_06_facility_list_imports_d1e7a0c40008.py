"""part F: RMI-style facility list imports (placeholder, issue 25)

Revision ID: d1e7a0c40008
Revises: d1e7a0c40007
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "d1e7a0c40008"
down_revision: str | None = "d1e7a0c40007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
