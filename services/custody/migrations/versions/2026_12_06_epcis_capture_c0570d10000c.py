"""EPCIS capture: capture jobs, captured events, lots' EPC classes, participants' GLN

Placeholder reserved for issue 26 (filled in by the part that owns it).

Revision ID: c0570d10000c
Revises: c0570d10000b
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

revision: str = "c0570d10000c"
down_revision: str | None = "c0570d10000b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
