"""participants_disclosure (reserved for issue 24 part R: fill in or leave empty)

Revision ID: c0570d100007
Revises: c0570d100006
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "c0570d100007"
down_revision: str | None = "c0570d100006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
