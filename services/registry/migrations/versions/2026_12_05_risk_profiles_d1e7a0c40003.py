"""risk profiles: per country or region, the OECD DDG Annex II risk factors at a level, with dates and source

`risk_profiles`: one row per place (country, region NULL for the whole country), factor and period
(`effective_from`, `effective_to` NULL while it applies), with its level (none, low, medium, high) and source.

Revision ID: d1e7a0c40003
Revises: d1e7a0c40002
Create Date: 2026-12-05 21:32:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e7a0c40003"
down_revision: str | None = "d1e7a0c40002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_profiles",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("factor", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_profiles")),
        sa.UniqueConstraint("seq", name=op.f("uq_risk_profiles_seq")),
    )
    op.create_index(
        "ix_risk_profiles_place", "risk_profiles", ["country", "region", "factor", "effective_from"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_risk_profiles_place", table_name="risk_profiles")
    op.drop_table("risk_profiles")
