"""corrections: what audit re-judged after a custody record was corrected (issue 26)

`corrections`: the custody corrections audit received (`custody.event.corrected`), one row each. A shipment a
correction voided keeps its row with `status` `voided` (never overdue); the flags whose grounds a correction
corrected carry it in their evidence (`flags.evidence.correction`, no column of its own).

Revision ID: a7d1e0000014
Revises: a7d1e0000013
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7d1e0000014"
down_revision: str | None = "a7d1e0000013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("correction_id", sa.Text(), nullable=False),
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("corrected_type", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("declared_by", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effect", sa.Text(), nullable=False),
        sa.Column("shipment_id", sa.Text(), nullable=True),
        sa.Column("corrective_event_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("correction_id", name=op.f("pk_corrections")),
    )
    op.create_index("ix_corrections_lot_id", "corrections", ["lot_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_corrections_lot_id", table_name="corrections")
    op.drop_table("corrections")
