"""asm lsm coexistence: artisanal miners on or next to an industrial title, and coexistence agreements

`asm_presence`: an ASM group (a mine participant, mining_type asm) working on or next to (`relation`) the title of an
industrial titleholder (a mine participant, mining_type lsm), since/until, with its source. `coexistence_agreements`:
an agreement between a titleholder and one or more of those groups (`asm_groups`), signed/valid_from/valid_until
and its status (negotiating, in_force, suspended, terminated). Both recorded by the operator (IRMA Standard
chapter 3.6; ARM's principles of coexistence); each change bumps `version`.

Revision ID: d1e7a0c40004
Revises: d1e7a0c40003
Create Date: 2026-12-05 21:33:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e7a0c40004"
down_revision: str | None = "d1e7a0c40003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "asm_presence",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("titleholder_id", sa.Text(), nullable=False),
        sa.Column("asm_group_id", sa.Text(), nullable=False),
        sa.Column("relation", sa.Text(), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["titleholder_id"], ["participants.id"], name=op.f("fk_asm_presence_titleholder_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["asm_group_id"], ["participants.id"], name=op.f("fk_asm_presence_asm_group_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asm_presence")),
        sa.UniqueConstraint("seq", name=op.f("uq_asm_presence_seq")),
    )
    op.create_index("ix_asm_presence_titleholder", "asm_presence", ["titleholder_id", "seq"], unique=False)
    op.create_index("ix_asm_presence_asm_group", "asm_presence", ["asm_group_id", "seq"], unique=False)
    op.create_table(
        "coexistence_agreements",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("titleholder_id", sa.Text(), nullable=False),
        sa.Column("asm_groups", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("signed", sa.Date(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["titleholder_id"],
            ["participants.id"],
            name=op.f("fk_coexistence_agreements_titleholder_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coexistence_agreements")),
        sa.UniqueConstraint("seq", name=op.f("uq_coexistence_agreements_seq")),
    )
    op.create_index(
        "ix_coexistence_agreements_titleholder", "coexistence_agreements", ["titleholder_id", "seq"], unique=False
    )
    op.create_index(
        "ix_coexistence_agreements_asm_groups",
        "coexistence_agreements",
        ["asm_groups"],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_coexistence_agreements_asm_groups", table_name="coexistence_agreements", postgresql_using="gin")
    op.drop_index("ix_coexistence_agreements_titleholder", table_name="coexistence_agreements")
    op.drop_table("coexistence_agreements")
    op.drop_index("ix_asm_presence_asm_group", table_name="asm_presence")
    op.drop_index("ix_asm_presence_titleholder", table_name="asm_presence")
    op.drop_table("asm_presence")
