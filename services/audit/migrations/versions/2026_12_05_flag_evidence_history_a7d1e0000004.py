"""flags: evidence re-judged when reference data arrives late, with its history

`flag_evidence_history` keeps every evidence a flag had before it was re-judged: when reference data (a participant,
a certification, a CAHRA area) known before a custody event reaches audit only after that event was judged, the flag
is judged again with it, gets the new evidence and summary, and the old ones go here (one row per replacement, keyed
by the id of the `audit.flag.updated` event that announced it, so a replay that reads that event again adds nothing).
A replay does not empty this table. Nothing to migrate: flags raised before kept their first evidence.

Revision ID: a7d1e0000004
Revises: a7d1e0000003
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a7d1e0000004'
down_revision: str | None = 'a7d1e0000003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('flag_evidence_history',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('flag_id', sa.Text(), nullable=False),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('replaced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flag_evidence_history')),
    sa.UniqueConstraint('seq', name=op.f('uq_flag_evidence_history_seq'))
    )
    op.create_index('ix_flag_evidence_history_flag', 'flag_evidence_history', ['flag_id', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_flag_evidence_history_flag', table_name='flag_evidence_history')
    op.drop_table('flag_evidence_history')
