"""outbox: rows the broker can never take go to a dead-letter table

A row the broker can never accept (larger than the producer's max_request_size or the broker's message.max.bytes,
not encodable, an invalid topic name) used to make the relay retry the same oldest row forever: the service's whole
event stream stopped. The relay now moves such a row here in one statement (deleted from `outbox`, inserted with
every outbox column, its outbox id as `outbox_id`, `reason`, `detail` and `failed_at`) and goes on with the next
rows. Operators list and re-queue them with `python -m shared.dead_letter` (docs/operations.md).

Revision ID: a7d1e0000001
Revises: 5e2a9c1d7b40
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a7d1e0000001'
down_revision: str | None = '5e2a9c1d7b40'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dataschema", sa.Text(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
    )


def downgrade() -> None:
    op.drop_table("dead_letter")
