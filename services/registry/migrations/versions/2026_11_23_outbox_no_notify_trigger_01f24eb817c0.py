"""outbox: no NOTIFY trigger (writers wake the relay after their commit)

A NOTIFY makes PostgreSQL take a cluster-wide lock from a transaction's pre-commit to the end of its commit, WAL
flush included: with the trigger, every transaction that wrote the outbox, in every service, committed one at a time.
Writers now call `shared.outbox.outbox_committed()` after committing (see its module).

Revision ID: 01f24eb817c0
Revises: 13aaddb758ac
Create Date: 2026-11-23 19:50:00+00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '01f24eb817c0'
down_revision: str | None = '13aaddb758ac'
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
