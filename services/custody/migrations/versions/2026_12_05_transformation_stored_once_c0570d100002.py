"""transformations: inputs and outputs stored once (n + m rows), not n x m edges

A transformation of n inputs and m outputs wrote n x m `genealogy` rows (and its lists once more as JSONB in
`transformations`). Now its lots are `transformation_inputs` (with the mass drawn) and `transformation_outputs`,
n + m rows linked to the transformation; walks go through them (`shared.genealogy`).

Upgrade: the two tables, filled from each transformation's `inputs` and `outputs` lists (written with its genealogy
in the same transaction, so they hold every edge's ends, in the order given); then `genealogy` and the two JSONB
columns go. Downgrade: the lists are rebuilt from the rows (mineral and form from the lots, the input's remaining
masses from its `custody.lot.transformed` event where that event carries them), the edges are every input times
every output, and the two tables go.

Revision ID: c0570d100002
Revises: c0570d100001
Create Date: 2026-12-05 19:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c0570d100002"
down_revision: str | None = "c0570d100001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transformation_inputs",
        sa.Column("transformation_id", sa.Text(), nullable=False),
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("mass_kg", sa.Numeric(precision=18, scale=3), nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.lot_id"], name=op.f("fk_transformation_inputs_lot_id_lots")),
        sa.ForeignKeyConstraint(
            ["transformation_id"],
            ["transformations.transformation_id"],
            name=op.f("fk_transformation_inputs_transformation_id_transformations"),
        ),
        sa.PrimaryKeyConstraint("transformation_id", "lot_id", name=op.f("pk_transformation_inputs")),
    )
    op.create_index(
        "ix_transformation_inputs_lot",
        "transformation_inputs",
        ["lot_id"],
        unique=False,
        postgresql_include=["transformation_id"],
    )
    op.create_table(
        "transformation_outputs",
        sa.Column("transformation_id", sa.Text(), nullable=False),
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.lot_id"], name=op.f("fk_transformation_outputs_lot_id_lots")),
        sa.ForeignKeyConstraint(
            ["transformation_id"],
            ["transformations.transformation_id"],
            name=op.f("fk_transformation_outputs_transformation_id_transformations"),
        ),
        sa.PrimaryKeyConstraint("transformation_id", "lot_id", name=op.f("pk_transformation_outputs")),
    )
    op.create_index(
        "ix_transformation_outputs_lot",
        "transformation_outputs",
        ["lot_id"],
        unique=True,
        postgresql_include=["transformation_id"],
    )
    op.execute(
        """
        INSERT INTO transformation_inputs (transformation_id, lot_id, position, mass_kg)
        SELECT t.transformation_id, x.e->>'lot_id', (x.i - 1)::int, (x.e->>'mass_kg')::numeric
        FROM transformations t CROSS JOIN LATERAL jsonb_array_elements(t.inputs) WITH ORDINALITY AS x(e, i)
        ON CONFLICT DO NOTHING
        """
    )
    op.execute(
        """
        INSERT INTO transformation_outputs (transformation_id, lot_id, position)
        SELECT t.transformation_id, x.e->>'lot_id', (x.i - 1)::int
        FROM transformations t CROSS JOIN LATERAL jsonb_array_elements(t.outputs) WITH ORDINALITY AS x(e, i)
        ON CONFLICT DO NOTHING
        """
    )
    op.drop_index("ix_genealogy_child_parent", table_name="genealogy")
    op.drop_table("genealogy")
    op.drop_column("transformations", "inputs")
    op.drop_column("transformations", "outputs")


def downgrade() -> None:
    op.add_column("transformations", sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("transformations", sa.Column("outputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.execute(
        """
        UPDATE transformations t SET
          inputs = coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                     'lot_id', i.lot_id, 'mineral', l.mineral, 'form', l.form, 'mass_kg', i.mass_kg::text,
                     'remaining_before_kg', e.data->>'remaining_before_kg',
                     'remaining_after_kg', e.data->>'remaining_after_kg') ORDER BY i.position)
            FROM transformation_inputs i JOIN lots l USING (lot_id)
            LEFT JOIN LATERAL (
              SELECT data FROM lot_events ev WHERE ev.lot_id = i.lot_id AND ev.type = 'custody.lot.transformed'
                AND ev.data->>'transformation_id' = i.transformation_id LIMIT 1
            ) e ON true
            WHERE i.transformation_id = t.transformation_id), '[]'::jsonb),
          outputs = coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                     'lot_id', o.lot_id, 'mineral', l.mineral, 'form', l.form, 'mass_kg', l.mass_kg::text)
                     ORDER BY o.position)
            FROM transformation_outputs o JOIN lots l USING (lot_id)
            WHERE o.transformation_id = t.transformation_id), '[]'::jsonb)
        """
    )
    op.alter_column("transformations", "inputs", nullable=False)
    op.alter_column("transformations", "outputs", nullable=False)
    op.create_table(
        "genealogy",
        sa.Column("parent", sa.Text(), nullable=False),
        sa.Column("child", sa.Text(), nullable=False),
        sa.Column("transformation_id", sa.Text(), nullable=False),
        sa.Column("mass_kg", sa.Numeric(precision=18, scale=3), nullable=False),
        sa.ForeignKeyConstraint(["child"], ["lots.lot_id"], name=op.f("fk_genealogy_child_lots")),
        sa.ForeignKeyConstraint(["parent"], ["lots.lot_id"], name=op.f("fk_genealogy_parent_lots")),
        sa.PrimaryKeyConstraint("parent", "child", "transformation_id", name=op.f("pk_genealogy")),
    )
    op.create_index("ix_genealogy_child_parent", "genealogy", ["child", "parent"], unique=False)
    op.execute(
        """
        INSERT INTO genealogy (parent, child, transformation_id, mass_kg)
        SELECT i.lot_id, o.lot_id, i.transformation_id, i.mass_kg
        FROM transformation_inputs i JOIN transformation_outputs o USING (transformation_id)
        """
    )
    op.drop_index("ix_transformation_outputs_lot", table_name="transformation_outputs")
    op.drop_table("transformation_outputs")
    op.drop_index("ix_transformation_inputs_lot", table_name="transformation_inputs")
    op.drop_table("transformation_inputs")
