"""outbox: no NOTIFY trigger (writers wake the relay after their commit)

A NOTIFY makes PostgreSQL take a cluster-wide lock from a transaction's pre-commit to the end of its commit, WAL
flush included: with the trigger, every transaction that wrote the outbox, in every service, committed one at a time.
Writers now call `shared.outbox.outbox_committed()` after committing (see its module).

Revision ID: 488c1c6a8029
Revises: 648ed8a6c40f
Create Date: 2026-11-23 19:50:00+00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '488c1c6a8029'
down_revision: str | None = '648ed8a6c40f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")


def downgrade() -> None:
    op.execute("""
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('outbox', '');
          RETURN NULL;
        END $$
    """)
    op.execute("CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()")
