"""part F: RMI-style facility list imports (issue 25)

`facility_list_imports`: one row per real import of a facility list (file name and SHA-256, format, when, by whom,
the counts of its report). The RMAP certifications an import records go to `certifications` as any other.

Revision ID: d1e7a0c40008
Revises: d1e7a0c40007
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d1e7a0c40008"
down_revision: str | None = "d1e7a0c40007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "facility_list_imports",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facility_list_imports")),
        sa.UniqueConstraint("seq", name=op.f("uq_facility_list_imports_seq")),
    )


def downgrade() -> None:
    op.drop_table("facility_list_imports")
