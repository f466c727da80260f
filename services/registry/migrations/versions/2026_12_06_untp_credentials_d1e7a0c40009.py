"""UNTP credentials: what the registry signed (issue 26)

`untp_credentials`: one row per UNTP credential the registry signed for custody (DTE) or audit (DPP): its id, kind,
the lot it is about, the SHA-256 of the JWS, the key, when, and who asked (the service and for whom).

Revision ID: d1e7a0c40009
Revises: d1e7a0c40008
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e7a0c40009"
down_revision: str | None = "d1e7a0c40008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "untp_credentials",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("lot_id", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("on_behalf_of", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_untp_credentials")),
        sa.UniqueConstraint("seq", name=op.f("uq_untp_credentials_seq")),
    )
    op.create_index("ix_untp_credentials_lot_id", "untp_credentials", ["lot_id"])


def downgrade() -> None:
    op.drop_index("ix_untp_credentials_lot_id", table_name="untp_credentials")
    op.drop_table("untp_credentials")
