"""part P: products, consumptions naming them, recycled origin lots, transformations' chain-of-custody model

(placeholder, issue 25)

Revision ID: c0570d10000b
Revises: c0570d10000a
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "c0570d10000b"
down_revision: str | None = "c0570d10000a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
