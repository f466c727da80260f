"""shipments: the bag's tag as shipped and as found on arrival, and the regions a shipment passes through

Bag-and-tag (issue 23, part H3): a mined lot's tag travels with it from the mine onward, so every shipment records
the tag on the bag when it left (`tag`) and the receipt the tag found on arrival (`received_tag`), as it records
seals. `transit_regions`: the ISO 3166-2 regions a shipment passes through (each in one of its `transit_countries`),
for the countries whose listing names regions. Rows written before have no tag and no transit regions (`{}`).

Revision ID: c0570d100004
Revises: c0570d100003
Create Date: 2026-12-05 21:31:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d100004"
down_revision: str | None = "c0570d100003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shipments", sa.Column("tag", sa.Text(), nullable=True))
    op.add_column("shipments", sa.Column("received_tag", sa.Text(), nullable=True))
    op.add_column(
        "shipments",
        sa.Column("transit_regions", sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("shipments", "transit_regions")
    op.drop_column("shipments", "received_tag")
    op.drop_column("shipments", "tag")
