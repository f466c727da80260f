"""part P: products, consumptions naming them, recycled origin lots, transformations' chain-of-custody model

- `products`: a participant's products (`<prefix>:<local id>`, its SKU), with a name, a GTIN where known (one per
  owner) and the metal it is mostly about;
- `consumptions.product_id`: the product a consumption went into (null: free text only), `consumptions.product`
  (the free text) nullable: a consumption names a product, a text, or both;
- `lots.origin_source`: for a recycled origin lot (`origin_kind` `recycled`), `recycled` or `scrap`, and
  `lots.origin_description`, its registrant's description of the material;
- `transformations.custody_model`: the chain-of-custody model (ISO 22095) the transformer recorded, if any.

Revision ID: c0570d10000b
Revises: c0570d10000a
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d10000b"
down_revision: str | None = "c0570d10000a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("product_id", sa.Text(), primary_key=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("gtin", sa.Text(), nullable=True),
        sa.Column("mineral", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_seq", sa.BigInteger(), sa.Identity(always=True), nullable=False, unique=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_products_owner", "products", ["owner", "created_seq"])
    op.create_index(
        "ux_products_owner_gtin", "products", ["owner", "gtin"], unique=True, postgresql_where=sa.text("gtin IS NOT NULL")
    )
    op.add_column("consumptions", sa.Column("product_id", sa.Text(), nullable=True))
    op.alter_column("consumptions", "product", existing_type=sa.Text(), nullable=True)
    op.create_index("ix_consumptions_product", "consumptions", ["product_id"])
    op.add_column("lots", sa.Column("origin_source", sa.Text(), nullable=True))
    op.add_column("lots", sa.Column("origin_description", sa.Text(), nullable=True))
    op.add_column("transformations", sa.Column("custody_model", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("transformations", "custody_model")
    op.drop_column("lots", "origin_description")
    op.drop_column("lots", "origin_source")
    op.drop_index("ix_consumptions_product", table_name="consumptions")
    op.execute("UPDATE consumptions SET product = product_id WHERE product IS NULL")
    op.alter_column("consumptions", "product", existing_type=sa.Text(), nullable=False)
    op.drop_column("consumptions", "product_id")
    op.drop_index("ux_products_owner_gtin", table_name="products")
    op.drop_index("ix_products_owner", table_name="products")
    op.drop_table("products")
