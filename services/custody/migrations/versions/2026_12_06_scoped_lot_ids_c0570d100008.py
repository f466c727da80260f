"""scoped_lot_ids: `participants.lot_prefix` (issue 24 part O)

Lot ids are scoped to the participant that registers them, as a company prefix scopes a GS1 identifier: a new lot
is stored as `<prefix>:<local id>`, the prefix the registrant's. Every participant custody knows gets a prefix of
8 characters of Crockford base32 (digits and upper-case letters without I, L, O, U), random and unique; the
participants projection assigns one when it first stores a participant (`custody.consumer`). Existing participants
get one here. Existing lots keep their ids.

Revision ID: c0570d100008
Revises: c0570d100007
Create Date: 2026-12-06 00:00:00+00:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0570d100008"
down_revision: str | None = "c0570d100007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def upgrade() -> None:
    op.add_column("participants", sa.Column("lot_prefix", sa.Text(), nullable=True))
    conn = op.get_bind()
    ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM participants ORDER BY id"))]
    taken: set[str] = set()
    for pid in ids:
        prefix = "".join(secrets.choice(CROCKFORD) for _ in range(8))
        while prefix in taken:
            prefix = "".join(secrets.choice(CROCKFORD) for _ in range(8))
        taken.add(prefix)
        conn.execute(sa.text("UPDATE participants SET lot_prefix = :p WHERE id = :id"), {"p": prefix, "id": pid})
    op.alter_column("participants", "lot_prefix", nullable=False)
    op.create_unique_constraint("uq_participants_lot_prefix", "participants", ["lot_prefix"])


def downgrade() -> None:
    op.drop_constraint("uq_participants_lot_prefix", "participants", type_="unique")
    op.drop_column("participants", "lot_prefix")
