"""lots: the tag and seal a lot was registered (or declared) with, for bag-and-tag

Issue 23, part H3: the first shipment of a lot registered at a mine is compared with the tag and seal the mine gave
it, and every receipt's tag with the registered one. The projection keeps those in memory for the lots registered
with either; these columns let it load them again (`statements.load_state`; a lot is shipped already when
`shipments` has a row for it). A replay fills them; rows from before have none (their lots are not judged on it).

Revision ID: a7d1e0000006
Revises: a7d1e0000005
Create Date: 2026-12-05 21:31:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000006"
down_revision: str | None = "a7d1e0000005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lots", sa.Column("tag", sa.Text(), nullable=True))
    op.add_column("lots", sa.Column("seal", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("lots", "seal")
    op.drop_column("lots", "tag")
