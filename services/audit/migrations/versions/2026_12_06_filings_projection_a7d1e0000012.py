"""part C: products, consumptions, input masses, chain-of-custody models and recycled origins for the filings

`products` (custody.product.registered/updated), `consumptions` (custody.lot.consumed, naming the product),
`transformation_inputs.mass_kg` (the mass drawn from each input), `transformations.custody_model` (ISO 22095) and
`lots.origin_source` (a recycled origin lot's source: recycled | scrap). The input masses of the transformations
already projected are filled from the events audit kept (`received_events`: every transformation event carries its
inputs' masses), in one UPDATE; products and consumptions come with the next replay.

Revision ID: a7d1e0000012
Revises: a7d1e0000011
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000012"
down_revision: str | None = "a7d1e0000011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_INPUT_MASSES = """
UPDATE transformation_inputs i SET mass_kg = m.mass_kg
FROM (
  SELECT DISTINCT ON (e.data->>'transformation_id', x->>'lot_id')
         e.data->>'transformation_id' AS transformation_id, x->>'lot_id' AS lot_id,
         (x->>'mass_kg')::numeric(18, 3) AS mass_kg
  FROM received_events e CROSS JOIN LATERAL json_array_elements(e.data->'inputs') x
  WHERE e.type IN ('custody.transformation.recorded', 'custody.lot.transformed')
    AND json_typeof(e.data->'inputs') = 'array' AND x->>'mass_kg' IS NOT NULL
  ORDER BY e.data->>'transformation_id', x->>'lot_id', e.seq
) m
WHERE i.transformation_id = m.transformation_id AND i.lot_id = m.lot_id AND i.mass_kg IS NULL
"""


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("product_id", sa.Text(), primary_key=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("gtin", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
    )
    op.create_index("ix_products_owner", "products", ["owner"])
    op.create_table(
        "consumptions",
        sa.Column("consumption_id", sa.Text(), primary_key=True),
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("mass_kg", sa.Numeric(18, 3), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
    )
    op.create_index("ix_consumptions_actor", "consumptions", ["actor", "consumed_at"])
    op.create_index("ix_consumptions_product", "consumptions", ["product_id"])
    op.add_column("transformation_inputs", sa.Column("mass_kg", sa.Numeric(18, 3), nullable=True))
    op.add_column("transformations", sa.Column("custody_model", sa.Text(), nullable=True))
    op.add_column("lots", sa.Column("origin_source", sa.Text(), nullable=True))
    op.execute(BACKFILL_INPUT_MASSES)


def downgrade() -> None:
    op.drop_column("lots", "origin_source")
    op.drop_column("transformations", "custody_model")
    op.drop_column("transformation_inputs", "mass_kg")
    op.drop_index("ix_consumptions_product", table_name="consumptions")
    op.drop_index("ix_consumptions_actor", table_name="consumptions")
    op.drop_table("consumptions")
    op.drop_index("ix_products_owner", table_name="products")
    op.drop_table("products")
