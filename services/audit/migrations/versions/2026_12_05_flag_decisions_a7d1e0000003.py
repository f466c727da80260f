"""flags: acknowledgements per participant, responses, decisions with who, when and note

`flag_decisions` holds every decision on a flag (acknowledge, respond, resolve, reopen) with who, their kind, the
authority they decided under, when, the note and evidence; a flag's status is now `open` or `resolved`, and
acknowledgements are rows (one per participant), not a shared status.

What people decided before is kept: an acknowledgement becomes an `acknowledge` decision of its author (the operator's
too, as it was), a resolution a `resolve` decision with its note; each is also queued on `audit.decisions` (the
outbox), so a replay into another database finds it. Flags `acknowledged` become `open` (their acknowledgement is the
row). Downgrade puts the latest acknowledgement back into the flag's columns.

Revision ID: a7d1e0000003
Revises: a7d1e0000002
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a7d1e0000003'
down_revision: str | None = 'a7d1e0000002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The decision ids are derived from the flag and the kind (md5 as a uuid), so running the data step twice (or a
# database migrated twice and compared) gives the same ids.
MIGRATE = """
INSERT INTO flag_decisions (id, flag_id, rule, cause, kind, decided_by, decided_by_kind, authority, decided_at,
                            note, evidence)
SELECT md5(f.id || ':' || d.kind)::uuid::text, f.id, f.rule, f.cause, d.kind, d.by,
       CASE WHEN d.by = 'operator' THEN 'operator' ELSE 'participant' END,
       jsonb_build_object('as', 'before_separation_of_duties'), d.at, d.note, '[]'::jsonb
FROM flags f
CROSS JOIN LATERAL (VALUES
    ('acknowledge', f.acknowledged_by, f.acknowledged_at, CASE WHEN f.status = 'acknowledged' THEN f.note END),
    ('resolve', f.resolved_by, f.resolved_at, f.note)
) AS d(kind, by, at, note)
WHERE d.by IS NOT NULL AND d.at IS NOT NULL
ON CONFLICT DO NOTHING
"""
PUBLISH = """
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data)
SELECT d.id, 'audit.decisions', d.flag_id,
       CASE d.kind WHEN 'acknowledge' THEN 'audit.decision.acknowledged' ELSE 'audit.decision.resolved' END,
       '/audit', d.flag_id, d.decided_at, NULL,
       jsonb_build_object('decision_id', d.id, 'flag_id', d.flag_id, 'rule', d.rule, 'cause', d.cause,
                          'kind', d.kind, 'decided_by', d.decided_by, 'decided_by_kind', d.decided_by_kind,
                          'authority', d.authority,
                          'decided_at', to_char(d.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'note', d.note, 'evidence', d.evidence)
FROM flag_decisions d ORDER BY d.seq
ON CONFLICT DO NOTHING
"""


def upgrade() -> None:
    op.create_table('flag_decisions',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('flag_id', sa.Text(), nullable=False),
    sa.Column('rule', sa.Text(), nullable=False),
    sa.Column('cause', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('decided_by', sa.Text(), nullable=False),
    sa.Column('decided_by_kind', sa.Text(), nullable=False),
    sa.Column('authority', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flag_decisions')),
    sa.UniqueConstraint('seq', name=op.f('uq_flag_decisions_seq'))
    )
    op.create_index('ix_flag_decisions_flag', 'flag_decisions', ['flag_id', 'seq'], unique=False)
    op.create_index('uq_flag_decisions_acknowledgement', 'flag_decisions', ['flag_id', 'decided_by'], unique=True, postgresql_where=sa.text("kind = 'acknowledge'"))
    op.execute(MIGRATE)
    op.execute(PUBLISH)
    op.execute("UPDATE flags SET status = 'open' WHERE status = 'acknowledged'")
    op.drop_column('flags', 'acknowledged_at')
    op.drop_column('flags', 'acknowledged_by')


def downgrade() -> None:
    op.add_column('flags', sa.Column('acknowledged_by', sa.Text(), nullable=True))
    op.add_column('flags', sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("""
UPDATE flags f SET acknowledged_by = d.decided_by, acknowledged_at = d.decided_at,
       status = CASE WHEN f.status = 'open' THEN 'acknowledged' ELSE f.status END,
       note = CASE WHEN f.status = 'open' THEN coalesce(d.note, f.note) ELSE f.note END
FROM (SELECT DISTINCT ON (flag_id) flag_id, decided_by, decided_at, note FROM flag_decisions
      WHERE kind = 'acknowledge' ORDER BY flag_id, seq DESC) d
WHERE d.flag_id = f.id
""")
    op.drop_index('uq_flag_decisions_acknowledgement', table_name='flag_decisions', postgresql_where=sa.text("kind = 'acknowledge'"))
    op.drop_index('ix_flag_decisions_flag', table_name='flag_decisions')
    op.drop_table('flag_decisions')
