"""EPCIS capture: capture jobs, captured events, lots' EPC classes, participants' GLN

`capture_jobs`: one row per `POST /capture` (its status, counts and per-event errors, its Idempotency-Key).
`epcis_events`: every event captured, as sent, with what it became in custody (`custody_event_ids`) or why it is
stored only (`note`); unique per capturing participant and eventID. `lot_epcs`: the LGTIN (`shared.epc.lgtin_key`)
a captured commissioning bound to its lot. `participants.gln`: from the registry events' `identifiers.gln`.

Revision ID: c0570d10000c
Revises: c0570d10000b
Create Date: 2026-12-06 05:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c0570d10000c"
down_revision: str | None = "c0570d10000b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capture_jobs",
        sa.Column("job_id", sa.Text(), primary_key=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error_behaviour", sa.Text(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stored", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("errors", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
        sa.CheckConstraint("error_behaviour IN ('rollback', 'proceed')", name="error_behaviour"),
        sa.UniqueConstraint("actor", "key", name="uq_capture_jobs_actor_key"),
    )
    op.create_index("ix_capture_jobs_actor_created", "capture_jobs", ["actor", "created_at"])
    # one running job per participant, whatever races
    op.create_index(
        "uq_capture_jobs_running",
        "capture_jobs",
        ["actor"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "epcis_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("biz_step", sa.Text(), nullable=True),
        sa.Column("biz_location", sa.Text(), nullable=True),
        sa.Column("epcs", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("lot_ids", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("custody_event_ids", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.CheckConstraint("outcome IN ('applied', 'stored', 'correction')", name="outcome"),
        sa.UniqueConstraint("actor", "event_id", name="uq_epcis_events_actor_event_id"),
    )
    op.create_index("ix_epcis_events_event_time", "epcis_events", ["event_time", "id"])
    op.create_index("ix_epcis_events_epcs", "epcis_events", ["epcs"], postgresql_using="gin")
    op.create_index("ix_epcis_events_lot_ids", "epcis_events", ["lot_ids"], postgresql_using="gin")
    # the query finds the captured eventID of a page's custody events by `custody_event_ids && $1`
    op.create_index("ix_epcis_events_custody_event_ids", "epcis_events", ["custody_event_ids"], postgresql_using="gin")
    op.create_table(
        "lot_epcs",
        sa.Column("lot_id", sa.Text(), sa.ForeignKey("lots.lot_id", name="fk_lot_epcs_lot_id_lots"), primary_key=True),
        sa.Column("epc", sa.Text(), nullable=False),
        sa.Column("registrant", sa.Text(), nullable=False),
        sa.UniqueConstraint("registrant", "epc", name="uq_lot_epcs_registrant_epc"),
    )
    op.create_index("ix_lot_epcs_epc", "lot_epcs", ["epc"])
    op.add_column("participants", sa.Column("gln", sa.Text(), nullable=True))
    op.create_index("ix_participants_gln", "participants", ["gln"])


def downgrade() -> None:
    op.drop_index("ix_participants_gln", table_name="participants")
    op.drop_column("participants", "gln")
    op.drop_table("lot_epcs")
    op.drop_table("epcis_events")
    op.drop_table("capture_jobs")
