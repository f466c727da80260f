"""holders until: an index on shipments by (from_participant, to_participant) (issue 24 part D)

What a participant reads of a lot is cut at read time from the lot's shipments and receipts (a former holder sees
the lot up to its buyer's receipt); whether two participants are direct counterparties (a shipment between them,
either way: `shared.visibility.Relation`) is asked for the few participants a lot, history or trace names, by this
index in both directions (`from = viewer AND to = ANY(named)`, `from = ANY(named) AND to = viewer`).

Revision ID: c0570d100009
Revises: c0570d100008
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c0570d100009"
down_revision: str | None = "c0570d100008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_shipments_parties", "shipments", ["from_participant", "to_participant"])


def downgrade() -> None:
    op.drop_index("ix_shipments_parties", table_name="shipments")
