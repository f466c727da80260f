"""salted digest chain: `lot_events.recipe` and `lot_events.salts` (issue 24 part V)

Each lot event records the hash recipe it was written with (docs/verification.md). Recipe 1, every event written
before this revision (the column's default): the hash covers the event whole. Recipe 2, every event written since:
the hash covers a salted digest of each disclosable field (`actor` and each top-level key of `data`), so a history
can withhold a field and still verify; `salts` keeps each field's salt (hex), null for recipe 1. A check keeps the
two together: recipe 1 has no salts, recipe 2 has them.

Downgrade refuses while any recipe-2 event exists: without its salts, nobody could verify it again (and code from
before this revision would read its chain as broken). On a database without one, the two columns go.

Revision ID: c0570d100006
Revises: c0570d100005
Create Date: 2026-12-06 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c0570d100006"
down_revision: str | None = "c0570d100005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lot_events", sa.Column("recipe", sa.SmallInteger(), server_default=sa.text("1"), nullable=False))
    op.add_column("lot_events", sa.Column("salts", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.create_check_constraint(
        op.f("ck_lot_events_recipe_salts"),
        "lot_events",
        "(recipe = 1 AND salts IS NULL) OR (recipe = 2 AND salts IS NOT NULL)",
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM lot_events WHERE recipe <> 1) THEN
            RAISE EXCEPTION 'lot_events holds recipe-2 events: dropping their salts would make them unverifiable';
          END IF;
        END $$
        """
    )
    op.drop_constraint(op.f("ck_lot_events_recipe_salts"), "lot_events", type_="check")
    op.drop_column("lot_events", "salts")
    op.drop_column("lot_events", "recipe")
