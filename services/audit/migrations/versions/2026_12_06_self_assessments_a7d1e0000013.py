"""part S: self-assessment scores projected for buyers and filings (issue 25)

`self_assessments`: one row per `registry.self_assessment.submitted` (scores per OECD step, total, CMRT
company-level answers), indexed by participant and submission time.

Revision ID: a7d1e0000013
Revises: a7d1e0000012
Create Date: 2026-12-06 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7d1e0000013"
down_revision: str | None = "a7d1e0000012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "self_assessments",
        sa.Column("assessment_id", sa.Text(), nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("questionnaire_version", sa.Text(), nullable=False),
        sa.Column("scores", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("total", sa.Numeric(4, 1), nullable=False),
        sa.Column("cmrt_answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("assessment_id", name=op.f("pk_self_assessments")),
    )
    op.create_index(
        "ix_self_assessments_participant", "self_assessments", ["participant_id", "submitted_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_self_assessments_participant", table_name="self_assessments")
    op.drop_table("self_assessments")
