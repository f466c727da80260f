"""disclosure policies and the directory's invitations (issue 24 part R)

`participants.disclosure`: who may learn the participant's identity (`shared.vocab.Disclosure`: operator,
counterparties, downstream, public); existing participants get the default, `counterparties`, smelters and refiners
`public` (what they are by nature: `shared.vocab.effective_disclosure`). `invitations`: the operator introduces two
participants (`participant_id` to `invitee_id`, with a note): each then finds the other in its directory, as the
other's policy allows for a counterparty.

Revision ID: d1e7a0c40005
Revises: d1e7a0c40004
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e7a0c40005"
down_revision: str | None = "d1e7a0c40004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "participants",
        sa.Column("disclosure", sa.Text(), server_default=sa.text("'counterparties'"), nullable=False),
    )
    # Smelters and refiners are public by nature: stored as such, so what is stored is what applies.
    op.execute("UPDATE participants SET disclosure = 'public' WHERE kind IN ('smelter', 'refiner')")
    op.create_table(
        "invitations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=False),
        sa.Column("invitee_id", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_invitations_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["invitee_id"], ["participants.id"], name=op.f("fk_invitations_invitee_id_participants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("seq", name=op.f("uq_invitations_seq")),
        sa.UniqueConstraint("participant_id", "invitee_id", name=op.f("uq_invitations_participant_id")),
    )
    op.create_index("ix_invitations_invitee", "invitations", ["invitee_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_invitations_invitee", table_name="invitations")
    op.drop_table("invitations")
    op.drop_column("participants", "disclosure")
