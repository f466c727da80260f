"""regulators and their grants (issue 24 part G)

`regulators` (name, authority, country: registered by the operator) and `regulator_grants` (read access to lots and
participants for a period, one token each: its id `jti`, the period is the token's `nbf`..`exp`; revoked ones join
`GET /credentials/revoked` with the participants' and officers').

Revision ID: d1e7a0c40006
Revises: d1e7a0c40005
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e7a0c40006"
down_revision: str | None = "d1e7a0c40005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "regulators",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("authority", sa.Text(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regulators")),
        sa.UniqueConstraint("seq", name=op.f("uq_regulators_seq")),
    )
    op.create_table(
        "regulator_grants",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("regulator_id", sa.Text(), nullable=False),
        sa.Column("lots", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("participants", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["kid"], ["signing_keys.kid"], name=op.f("fk_regulator_grants_kid_signing_keys")),
        sa.ForeignKeyConstraint(
            ["regulator_id"], ["regulators.id"], name=op.f("fk_regulator_grants_regulator_id_regulators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regulator_grants")),
        sa.UniqueConstraint("jti", name=op.f("uq_regulator_grants_jti")),
        sa.UniqueConstraint("seq", name=op.f("uq_regulator_grants_seq")),
    )
    op.create_index("ix_regulator_grants_regulator", "regulator_grants", ["regulator_id", "seq"], unique=False)
    op.create_index(
        "ix_regulator_grants_revoked",
        "regulator_grants",
        ["revoked_at"],
        unique=False,
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_regulator_grants_revoked", table_name="regulator_grants", postgresql_where=sa.text("revoked_at IS NOT NULL")
    )
    op.drop_index("ix_regulator_grants_regulator", table_name="regulator_grants")
    op.drop_table("regulator_grants")
    op.drop_table("regulators")
