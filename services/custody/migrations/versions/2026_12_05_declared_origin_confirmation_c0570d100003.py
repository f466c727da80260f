"""declared origin confirmation

A declaration from outside the system (`POST /lots/external`) may name a registered mine; that mine confirms or
disputes it (`POST /lots/{lot_id}/origin-confirmation`). `origin_confirmations` keeps its latest answer per lot (each
answer is also a `custody.lot.origin_confirmed` event on the lot's chain). Downgrade drops the table (the answers stay
in the lots' chains).

Revision ID: c0570d100003
Revises: c0570d100002
Create Date: 2026-12-05 21:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d100003"
down_revision: str | None = "c0570d100002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "origin_confirmations",
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("mine", sa.Text(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.lot_id"], name=op.f("fk_origin_confirmations_lot_id_lots")),
        sa.PrimaryKeyConstraint("lot_id", name=op.f("pk_origin_confirmations")),
    )


def downgrade() -> None:
    op.drop_table("origin_confirmations")
