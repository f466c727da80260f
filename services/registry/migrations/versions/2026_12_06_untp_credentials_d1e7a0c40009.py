"""UNTP credentials: what the registry signed

Placeholder reserved for issue 26 (filled in by the part that owns it).

Revision ID: d1e7a0c40009
Revises: d1e7a0c40008
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

revision: str = "d1e7a0c40009"
down_revision: str | None = "d1e7a0c40008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
