"""part S: company due-diligence self-assessments (issue 25)

`self_assessments`: each submission whole (answers with comments and evidence links), its score per OECD step, the
total and the CMRT company-level answers derived from it; newest first per participant by `seq`.

Revision ID: d1e7a0c40007
Revises: d1e7a0c40006
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d1e7a0c40007"
down_revision: str | None = "d1e7a0c40006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "self_assessments",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=False),
        sa.Column("questionnaire_version", sa.Text(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.Text(), nullable=False),
        sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("scores", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("total", sa.Numeric(4, 1), nullable=False),
        sa.Column("cmrt_answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_self_assessments_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_self_assessments")),
        sa.UniqueConstraint("seq", name=op.f("uq_self_assessments_seq")),
    )
    op.create_index("ix_self_assessments_participant", "self_assessments", ["participant_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_self_assessments_participant", table_name="self_assessments")
    op.drop_table("self_assessments")
