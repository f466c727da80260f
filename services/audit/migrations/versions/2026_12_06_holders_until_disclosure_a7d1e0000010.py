"""holders_until_disclosure: when a holder let go of a lot, and each participant's disclosure policy (issue 24, A)

`lot_holders.until`: null while the participant holds the lot; else the time (the custody event's, as recorded) of
the receipt by which its buyer took the lot over: a former holder sees the flags raised on events up to that
moment, none after (`audit.repository`). `participants.disclosure`: the participant's disclosure policy as the
registry's participant events carry it (`shared.vocab.Disclosure`; null: the default), read by
`shared.visibility.identity_disclosed` when a flag names the participant. A replay rebuilds both from the events.

Revision ID: a7d1e0000010
Revises: a7d1e0000009
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000010"
down_revision: str | None = "a7d1e0000009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lot_holders", sa.Column("until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("participants", sa.Column("disclosure", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("participants", "disclosure")
    op.drop_column("lot_holders", "until")
