"""webhooks: subscriptions, their deliveries, and the webhooks consumer's own inbox (issue 28)

Everything of the webhooks lives in the schema `webhooks`:
- `webhooks.subscriptions`: who subscribed (owner, its kind, an officer's scope), the https URL, the HMAC secret,
  the filters (JSON: flags by severity, rule and lot; custody events by type and lot), whether it is enabled and
  since when its deliveries fail;
- `webhooks.deliveries`: one row per event and matching subscription, the body as signed (what that subscriber may
  see of the event), its status (`pending`, `sending`, `delivered`, `failed`) and its attempts;
- `webhooks.processed_events`: the inbox of the `<service>-webhooks` consumer group. The projection's
  `processed_events` holds the same custody events' ids, so the webhooks' consumer (`shared.consumer`, which writes
  `processed_events` unqualified) runs with `search_path = webhooks, public` and finds this one.

Revision ID: a7d1e0000016
Revises: a7d1e0000015
Create Date: 2026-12-06 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7d1e0000016"
down_revision: str | None = "a7d1e0000015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "webhooks"
LIVE = sa.text("status IN ('pending', 'sending')")


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("owner_kind", sa.Text(), nullable=False),
        sa.Column("owner_scope", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("filters", postgresql.JSONB(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        schema=SCHEMA,
    )
    op.create_index("ix_subscriptions_owner", "subscriptions", ["owner", "owner_kind"], schema=SCHEMA)
    op.create_table(
        "deliveries",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed')", name=op.f("ck_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            [f"{SCHEMA}.subscriptions.id"],
            name=op.f("fk_deliveries_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("id", name=op.f("uq_deliveries_id")),
        sa.UniqueConstraint("subscription_id", "event_id", name=op.f("uq_deliveries_subscription_id")),
        schema=SCHEMA,
    )
    # the delivery worker's claim: a subscription's due deliveries, and how many of its are in flight
    op.create_index(
        "ix_deliveries_due", "deliveries", ["subscription_id", "next_attempt_at"], schema=SCHEMA, postgresql_where=LIVE
    )
    op.create_index("ix_deliveries_subscription_seq", "deliveries", ["subscription_id", "seq"], schema=SCHEMA)
    op.create_table(
        "processed_events",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name=op.f("pk_processed_events")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("processed_events", schema=SCHEMA)
    op.drop_table("deliveries", schema=SCHEMA)
    op.drop_table("subscriptions", schema=SCHEMA)
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA}")
