"""Signing keys rotate (issue 28): publish before use, retire, keep the public half

`signing_keys.activates_at`: when a key starts signing (a rotation publishes the new key first; existing keys: their
`created_at`). `tokens_until`: set when a key is retired, the last expiry of any token it signed (verifiers refuse a
token naming it after that). `private_pem` becomes nullable: a retired key's private half is erased.

Downgrading fails while a retired key's private half is erased (NOT NULL cannot come back): such a database cannot
sign with those keys any more, whatever its schema.

Revision ID: d1e7a0c4000a
Revises: d1e7a0c40009
Create Date: 2026-12-06 09:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e7a0c4000a"
down_revision: str | None = "d1e7a0c40009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "signing_keys",
        sa.Column("activates_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True),
    )
    op.execute("UPDATE signing_keys SET activates_at = created_at")
    op.alter_column("signing_keys", "activates_at", nullable=False)
    op.add_column("signing_keys", sa.Column("tokens_until", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("signing_keys", "private_pem", nullable=True)


def downgrade() -> None:
    op.alter_column("signing_keys", "private_pem", nullable=False)
    op.drop_column("signing_keys", "tokens_until")
    op.drop_column("signing_keys", "activates_at")
