"""participants' RMI facility id: `participants.rmi_smelter_id`

A smelter's or refiner's RMI facility id (`CID...`), from the participant events' `identifiers`, so that a trace
names each smelter on the path with the id downstream filings (CMRT, EMRT) need. Null for everyone else; filled for
existing participants by the next event about them.

Revision ID: c0570d10000a
Revises: c0570d100009
Create Date: 2026-12-06 01:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d10000a"
down_revision: str | None = "c0570d100009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("participants", sa.Column("rmi_smelter_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("participants", "rmi_smelter_id")
