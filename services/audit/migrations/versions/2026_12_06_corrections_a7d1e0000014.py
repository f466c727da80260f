"""corrections: what audit re-judged after a custody record was corrected

Placeholder reserved for issue 26 (filled in by the part that owns it).

Revision ID: a7d1e0000014
Revises: a7d1e0000013
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

revision: str = "a7d1e0000014"
down_revision: str | None = "a7d1e0000013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
