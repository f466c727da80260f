"""declared origins and transit regions

A lot declared from outside the system keeps what its declaration said beyond the lot's origin columns
(`declared_origins.declared`: the declarant, the certifications it named, the mine's name) and the named mine's latest
answer (`declared_origins.answer`: confirmed or disputed, its note, event, who and when), so the projection screens
declared origins again after a restart. A table of its own, written with an upsert: a batch's statement cannot update
the `lots` row it inserts. A shipment keeps the transit regions it named (`shipments.transit_regions`, ISO 3166-2;
empty for shipments recorded before). All are written from events: a replay rebuilds them (a declaration written again
resets its answer, which the answer's own event then sets again).

Revision ID: a7d1e0000005
Revises: a7d1e0000004
Create Date: 2026-12-05 21:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7d1e0000005"
down_revision: str | None = "a7d1e0000004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "declared_origins",
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("declared", postgresql.JSONB(), nullable=True),
        sa.Column("answer", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("lot_id", name=op.f("pk_declared_origins")),
    )
    op.add_column(
        "shipments",
        sa.Column(
            "transit_regions", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'::text[]")
        ),
    )


def downgrade() -> None:
    op.drop_column("shipments", "transit_regions")
    op.drop_table("declared_origins")
