"""participants' RMI facility id: `participants.rmi_smelter_id`

A smelter's or refiner's RMI facility id (`CID...`), from the participant events' `identifiers`, so that a risk
summary names each smelter passed with the id downstream filings (CMRT, EMRT) need. Null for everyone else; filled
for existing participants by the next replay (or the next event about them).

Revision ID: a7d1e0000011
Revises: a7d1e0000010
Create Date: 2026-12-06 01:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000011"
down_revision: str | None = "a7d1e0000010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("participants", sa.Column("rmi_smelter_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("participants", "rmi_smelter_id")
