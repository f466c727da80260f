"""projection head: several audit replicas share one projection (issue 27)

`projection_head`: one row saying how far the projection tables are: `version` (one more per batch committed, by
any replica) and `seq` (the last `received_events.seq` applied). A replica takes the row's lock for each batch it
writes (its transaction holds it to the commit), brings its in-memory state up to date by applying, in `seq` order,
the events other replicas committed since its own last batch, and moves the head on. `projection_skipped`: events kept
in the evidence trail whose effects PostgreSQL refused (left out when another replica catches up).

Revision ID: a7d1e0000015
Revises: a7d1e0000014
Create Date: 2026-12-06 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000015"
down_revision: str | None = "a7d1e0000014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "projection_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("writer", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_projection_head_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projection_head")),
    )
    # the projection as it stands: the events received so far are applied
    op.execute("INSERT INTO projection_head (id, version, seq) SELECT 1, 0, coalesce(max(seq), 0) FROM received_events")
    op.create_table(
        "projection_skipped",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", name=op.f("pk_projection_skipped")),
    )


def downgrade() -> None:
    op.drop_table("projection_skipped")
    op.drop_table("projection_head")
