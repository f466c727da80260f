"""capture jobs: the process running each, and when it last said so (several custody replicas, issue 27)

A replica that starts no longer fails every job created before it (the running jobs of the other replicas with
them): each running job carries its process (`owner`) and `alive_at`, which that process renews every few seconds;
any replica fails the jobs whose process stopped renewing them.

Revision ID: c0570d10000e
Revises: c0570d10000d
Create Date: 2026-12-06 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d10000e"
down_revision: str | None = "c0570d10000d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("capture_jobs", sa.Column("owner", sa.Text(), nullable=True))
    op.add_column(
        "capture_jobs",
        sa.Column("alive_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("capture_jobs", "alive_at")
    op.drop_column("capture_jobs", "owner")
