"""asm lsm coexistence: ASM presence, coexistence agreements, and lots produced by an ASM group

`asm_presence` and `coexistence_agreements`: the registry's records of ASM groups on or next to an industrial
titleholder's title and of the agreements between them, as last published (`version`), with when audit learned of
them (`known_at`); `coexistence_without_agreement` is judged with them (IRMA Standard chapter 3.6). `lots.produced_by`:
the ASM group an industrial titleholder's origin lot was produced by (screened as that group's ASM).

Revision ID: a7d1e0000008
Revises: a7d1e0000007
Create Date: 2026-12-05 21:33:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000008"
down_revision: str | None = "a7d1e0000007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "asm_presence",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("titleholder", sa.Text(), nullable=False),
        sa.Column("asm_group", sa.Text(), nullable=False),
        sa.Column("relation", sa.Text(), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("known_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asm_presence")),
    )
    op.create_index("ix_asm_presence_titleholder", "asm_presence", ["titleholder"], unique=False)
    op.create_table(
        "coexistence_agreements",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("titleholder", sa.Text(), nullable=False),
        sa.Column("asm_groups", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("signed", sa.Date(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("known_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coexistence_agreements")),
    )
    op.create_index("ix_coexistence_agreements_titleholder", "coexistence_agreements", ["titleholder"], unique=False)
    op.add_column("lots", sa.Column("produced_by", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("lots", "produced_by")
    op.drop_index("ix_coexistence_agreements_titleholder", table_name="coexistence_agreements")
    op.drop_table("coexistence_agreements")
    op.drop_index("ix_asm_presence_titleholder", table_name="asm_presence")
    op.drop_table("asm_presence")
