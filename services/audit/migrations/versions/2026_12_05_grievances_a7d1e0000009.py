"""grievances: filed by anyone (no account), followed by a receipt code, triaged by the operator

`grievances` holds what was filed (about a participant or a named site, what happened, where, when), its public
status and the operator's public note; the receipt code is kept only as its SHA-256 hash. `grievance_contacts` holds
the filer's contact details (personal data), one row per grievance, apart so that erasing them (`DELETE
/grievances/{id}/contact`) deletes that row and marks `grievances.contact_erased_at`, and nothing else changes.
`grievance_triages` holds every triage decision (under review, dismissed, substantiated with the participant, the
period and the severity), each also published on `audit.decisions`. A replay empties none of the three.

Revision ID: a7d1e0000009
Revises: a7d1e0000008
Create Date: 2026-12-05 21:34:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d1e0000009"
down_revision: str | None = "a7d1e0000008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grievances",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("receipt_hash", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'received'"), nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=True),
        sa.Column("site_name", sa.Text(), nullable=True),
        sa.Column("country", sa.Text(), nullable=True),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("place", sa.Text(), nullable=True),
        sa.Column("occurred_from", sa.Date(), nullable=False),
        sa.Column("occurred_to", sa.Date(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("public_note", sa.Text(), nullable=True),
        sa.Column("contact_erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grievances")),
        sa.UniqueConstraint("receipt_hash", name=op.f("uq_grievances_receipt_hash")),
        sa.UniqueConstraint("seq", name=op.f("uq_grievances_seq")),
    )
    op.create_table(
        "grievance_contacts",
        sa.Column("grievance_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grievance_id"],
            ["grievances.id"],
            name=op.f("fk_grievance_contacts_grievance_id_grievances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("grievance_id", name=op.f("pk_grievance_contacts")),
    )
    op.create_table(
        "grievance_triages",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("grievance_id", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=True),
        sa.Column("period_from", sa.Date(), nullable=True),
        sa.Column("period_to", sa.Date(), nullable=True),
        sa.Column("severity", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grievance_triages")),
        sa.UniqueConstraint("seq", name=op.f("uq_grievance_triages_seq")),
    )
    op.create_index("ix_grievance_triages_grievance", "grievance_triages", ["grievance_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_grievance_triages_grievance", table_name="grievance_triages")
    op.drop_table("grievance_triages")
    op.drop_table("grievance_contacts")
    op.drop_table("grievances")
