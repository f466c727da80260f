"""participants disclosure: `participants.disclosure` (issue 24 part D)

Custody's copy of each participant's disclosure policy (`shared.vocab.Disclosure`), from the `disclosure` field of
`registry.participant.registered` / `.updated`: who may learn its identity where it appears in what others read
(custody's lots, histories and traces, `shared.visibility.identity_disclosed`). Null: no policy on record (an event
from before policies): the default, `counterparties`.

Revision ID: c0570d100007
Revises: c0570d100006
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d100007"
down_revision: str | None = "c0570d100006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("participants", sa.Column("disclosure", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("participants", "disclosure")
