"""corrections: a custody record corrected by a correcting event (issue 26)

`corrections`: one row per corrected event (unique: an event is corrected once), written with the correcting event
(`custody.event.corrected`, on the lot's chain); the corrected event stays as it was. A shipment declared
`did_not_occur` while in transit is voided: `shipments.status` becomes `voided` (a check now names the statuses).

Revision ID: c0570d10000d
Revises: c0570d10000c
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c0570d10000d"
down_revision: str | None = "c0570d10000c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("correction_id", sa.Text(), nullable=False),
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("corrected_type", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("corrective_event_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("declared_by", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effect", sa.Text(), nullable=False),
        sa.Column("shipment_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.lot_id"], name=op.f("fk_corrections_lot_id_lots")),
        sa.PrimaryKeyConstraint("correction_id", name=op.f("pk_corrections")),
        sa.UniqueConstraint("event_id", name=op.f("uq_corrections_event_id")),
    )
    op.create_check_constraint(
        op.f("ck_shipments_status"), "shipments", "status IN ('in_transit', 'received', 'voided')"
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM corrections) THEN
            RAISE EXCEPTION 'corrections are recorded: dropping them would unmark the corrected events';
          END IF;
        END $$
        """
    )
    op.drop_constraint(op.f("ck_shipments_status"), "shipments", type_="check")
    op.drop_table("corrections")
