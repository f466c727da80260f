"""received_events: the event data as `json` (the text as received), not `jsonb`

`received_events` is the evidence trail: each event as it arrived. `json` keeps the data exactly as the producer
wrote it (key order, number spelling), where `jsonb` re-encoded it; and it is what a replay spends its database time
on: COPYing the 200,000 events of the replay benchmark took PostgreSQL 3.1-3.6 s of CPU into `jsonb`, 2.3 s into
`json` (the indexes unchanged). Nothing reads the column but people and tests (`data->>'field'` works on both).

Revision ID: 5e2a9c1d7b40
Revises: b3f86c0d4e17
Create Date: 2026-12-04 08:00:00+00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '5e2a9c1d7b40'
down_revision: str | None = 'b3f86c0d4e17'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE received_events ALTER COLUMN data TYPE json USING data::json")


def downgrade() -> None:
    # A `json` value jsonb cannot hold (a \u0000 escape) makes this fail: the rows are kept rather than changed.
    op.execute("ALTER TABLE received_events ALTER COLUMN data TYPE jsonb USING data::jsonb")
