"""risk profiles: the registry's country and region risk profiles, as audit screens origins with them

`risk_profiles`: one row per profile the registry published (`registry.risk_profile.updated`): place (country,
region NULL for the whole country), factor, level, period, source, and when audit first knew it.

Revision ID: a7d1e0000007
Revises: a7d1e0000006
Create Date: 2026-12-05 21:32:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000007"
down_revision: str | None = "a7d1e0000006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_profiles",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("factor", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("known_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_profiles")),
    )
    op.create_index("ix_risk_profiles_country", "risk_profiles", ["country", "region"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_risk_profiles_country", table_name="risk_profiles")
    op.drop_table("risk_profiles")
