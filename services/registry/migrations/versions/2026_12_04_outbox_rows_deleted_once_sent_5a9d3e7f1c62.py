"""outbox: a row is deleted once the broker acknowledged it (no published_at, attempts or partial indexes)

The relay used to set `published_at` and keep published rows for a day. Each of those updates left an entry
behind in the partial index of unpublished rows until a vacuum removed it, and the relay's claim walked over all of
them every round: with autovacuum visiting a database once a minute, a relay round at 500 events/s read ~900 buffers
(1.7 ms) for a few dozen rows. Now the relay deletes what was acknowledged and vacuums the (small) table every few
seconds: ~30 buffers (0.07 ms) a round. The events themselves stay on Kafka and in the service's own tables.

Revision ID: 5a9d3e7f1c62
Revises: 01f24eb817c0
Create Date: 2026-12-04 03:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '5a9d3e7f1c62'
down_revision: str | None = '01f24eb817c0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM outbox WHERE published_at IS NOT NULL")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_column("outbox", "published_at")
    op.drop_column("outbox", "attempts")


def downgrade() -> None:
    op.add_column("outbox", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("outbox", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"], postgresql_where=sa.text("published_at IS NOT NULL"))
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL"))
