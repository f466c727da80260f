"""outbox and dead_letter: the W3C trace context of each event (`traceparent`)

An event written while a request (or a consumed event) is traced keeps that trace's `traceparent`; the relay sends it
as the record's `traceparent` header, so the consumers' work joins the same trace (shared/tracing.py,
docs/operations.md "Traces"). NULL when there was none. A dead-lettered row keeps it too. Adding a NULL column is a
change of the catalogue only: no table rewrite.

Revision ID: c0570d10000f
Revises: c0570d10000e
Create Date: 2026-12-06 11:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d10000f"
down_revision: str | None = "c0570d10000e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("traceparent", sa.Text(), nullable=True))
    op.add_column("dead_letter", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("dead_letter", "traceparent")
    op.drop_column("outbox", "traceparent")
