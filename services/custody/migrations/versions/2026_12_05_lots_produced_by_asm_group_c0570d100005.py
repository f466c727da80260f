"""lots produced by asm group: `lots.produced_by`

An industrial titleholder registering an origin lot may say an ASM group (a registered participant, a mine with
mining_type asm) produced it: material bought from artisanal miners on or next to its title (IRMA Standard chapter
3.6). Null for a mine's own production and for every other lot.

Revision ID: c0570d100005
Revises: c0570d100004
Create Date: 2026-12-05 21:33:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d100005"
down_revision: str | None = "c0570d100004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lots", sa.Column("produced_by", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("lots", "produced_by")
