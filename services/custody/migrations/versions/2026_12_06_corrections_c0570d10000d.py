"""corrections: a custody record corrected by a correcting event

Placeholder reserved for issue 26 (filled in by the part that owns it).

Revision ID: c0570d10000d
Revises: c0570d10000c
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

revision: str = "c0570d10000d"
down_revision: str | None = "c0570d10000c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
