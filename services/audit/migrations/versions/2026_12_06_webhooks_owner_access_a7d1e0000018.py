"""webhooks.subscriptions: the credential a subscription follows, and its suspension when its owner's access ended

A subscription delivers what its owner may see, judged as a request of the owner would be judged now: it records the
credential (token id and expiry) that made it, or that its owner last replayed it with, and is suspended
(`suspended_at`, `suspended_reason`) once that credential is revoked (the registry's revocation list, which audit
loads) or expired. Suspended, it is sent nothing: its deliveries waiting are given up (`failed`, never posted), the
events read meanwhile make none; its owner, with a valid credential, resumes it by a replay (docs/webhooks.md).

A participant's or an officer's subscription made before this revision has no credential recorded, so nothing tells
whether its owner's access still holds: it is suspended here, with that reason, until its owner replays it.

Revision ID: a7d1e0000018
Revises: a7d1e0000017
Create Date: 2026-12-06 11:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000018"
down_revision: str | None = "a7d1e0000017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "webhooks"
LEGACY_REASON = (
    "made before audit recorded the credential a subscription follows: its owner resumes it with a valid credential "
    "(POST /webhooks/{id}/replay)"
)


def upgrade() -> None:
    for column in (
        sa.Column("owner_token_id", sa.Text(), nullable=True),
        sa.Column("owner_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suspended_reason", sa.Text(), nullable=True),
    ):
        op.add_column("subscriptions", column, schema=SCHEMA)
    op.execute(
        sa.text(
            "UPDATE webhooks.subscriptions SET suspended_at = now(), suspended_reason = :reason "
            "WHERE owner_kind <> 'operator' AND owner_token_id IS NULL"
        ).bindparams(reason=LEGACY_REASON)
    )
    op.execute(
        "UPDATE webhooks.deliveries d SET status = 'failed', last_error = 'withheld: ' || s.suspended_reason "
        "FROM webhooks.subscriptions s WHERE d.subscription_id = s.id AND s.suspended_at IS NOT NULL "
        "AND d.status = 'pending'"
    )


def downgrade() -> None:
    for name in ("suspended_reason", "suspended_at", "owner_expires_at", "owner_token_id"):
        op.drop_column("subscriptions", name, schema=SCHEMA)
