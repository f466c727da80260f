"""regulators_grants (reserved for issue 24 part G: fill in or leave empty)

Revision ID: d1e7a0c40006
Revises: d1e7a0c40005
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "d1e7a0c40006"
down_revision: str | None = "d1e7a0c40005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
