"""transformations: inputs and outputs stored once (n + m rows), not n x m edges

The projection kept a transformation of n inputs and m outputs as n x m `genealogy` rows. Now its lots are
`transformation_inputs` and `transformation_outputs`, n + m rows linked to the transformation; the walks of the
risk summary and of visibility go through them (`shared.genealogy`).

Upgrade: the two tables; the inputs from `genealogy` (each parent of a transformation once; the projection never
knew their order, so they are numbered in id order), the outputs from each transformation's `outputs` list (in the
order given); then `genealogy` goes. Downgrade: `genealogy` again, every input times every output, and the two
tables go.

Revision ID: a7d1e0000002
Revises: a7d1e0000001
Create Date: 2026-12-05 19:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000002"
down_revision: str | None = "a7d1e0000001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("transformation_inputs", "transformation_outputs"):
        op.create_table(
            table,
            sa.Column("transformation_id", sa.Text(), nullable=False),
            sa.Column("lot_id", sa.Text(), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("transformation_id", "lot_id", name=op.f(f"pk_{table}")),
        )
        op.create_index(f"ix_{table}_lot", table, ["lot_id"], unique=False, postgresql_include=["transformation_id"])
    op.execute(
        """
        INSERT INTO transformation_inputs (transformation_id, lot_id, position)
        SELECT transformation_id, parent,
               (row_number() OVER (PARTITION BY transformation_id ORDER BY parent) - 1)::int
        FROM (SELECT DISTINCT transformation_id, parent FROM genealogy) g
        """
    )
    op.execute(
        """
        INSERT INTO transformation_outputs (transformation_id, lot_id, position)
        SELECT t.transformation_id, x.lot_id, (x.i - 1)::int
        FROM transformations t CROSS JOIN LATERAL unnest(t.outputs) WITH ORDINALITY AS x(lot_id, i)
        ON CONFLICT DO NOTHING
        """
    )
    op.drop_index("ix_genealogy_child_parent", table_name="genealogy")
    op.drop_table("genealogy")


def downgrade() -> None:
    op.create_table(
        "genealogy",
        sa.Column("parent", sa.Text(), nullable=False),
        sa.Column("child", sa.Text(), nullable=False),
        sa.Column("transformation_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("parent", "child", "transformation_id", name=op.f("pk_genealogy")),
    )
    op.create_index("ix_genealogy_child_parent", "genealogy", ["child", "parent"], unique=False)
    op.execute(
        """
        INSERT INTO genealogy (parent, child, transformation_id)
        SELECT i.lot_id, o.lot_id, i.transformation_id
        FROM transformation_inputs i JOIN transformation_outputs o USING (transformation_id)
        """
    )
    for table in ("transformation_outputs", "transformation_inputs"):
        op.drop_index(f"ix_{table}_lot", table_name=table)
        op.drop_table(table)
