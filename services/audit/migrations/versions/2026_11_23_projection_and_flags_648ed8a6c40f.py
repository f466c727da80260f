"""projection and flags

Revision ID: 648ed8a6c40f
Revises: 32493ab1cb12
Create Date: 2026-11-23 14:42:10.393772+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '648ed8a6c40f'
down_revision: str | None = '32493ab1cb12'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cahra_areas',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('country', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('effective_to', sa.Date(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('known_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cahra_areas'))
    )
    op.create_index('ix_cahra_areas_country', 'cahra_areas', ['country', 'region'], unique=False)
    op.create_table('certifications',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('participant_id', sa.Text(), nullable=False),
    sa.Column('scheme', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('known_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certifications'))
    )
    op.create_index('ix_certifications_participant', 'certifications', ['participant_id', 'scheme'], unique=False)
    op.create_table('flags',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('rule', sa.Text(), nullable=False),
    sa.Column('cause', sa.Text(), nullable=False),
    sa.Column('severity', sa.Text(), nullable=False),
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('lot_ids', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('participants', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('status', sa.Text(), server_default=sa.text("'open'"), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('acknowledged_by', sa.Text(), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flags')),
    sa.UniqueConstraint('rule', 'cause', name=op.f('uq_flags_rule')),
    sa.UniqueConstraint('seq', name=op.f('uq_flags_seq'))
    )
    op.create_index('ix_flags_lot_ids', 'flags', ['lot_ids'], unique=False, postgresql_using='gin')
    op.create_index('ix_flags_participants', 'flags', ['participants'], unique=False, postgresql_using='gin')
    op.create_index('ix_flags_status_severity', 'flags', ['status', 'severity', 'seq'], unique=False)
    op.create_table('genealogy',
    sa.Column('parent', sa.Text(), nullable=False),
    sa.Column('child', sa.Text(), nullable=False),
    sa.Column('transformation_id', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('parent', 'child', 'transformation_id', name=op.f('pk_genealogy'))
    )
    op.create_index('ix_genealogy_child_parent', 'genealogy', ['child', 'parent'], unique=False)
    op.create_table('lot_holders',
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('participant_id', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('lot_id', 'participant_id', name=op.f('pk_lot_holders'))
    )
    op.create_index('ix_lot_holders_participant', 'lot_holders', ['participant_id'], unique=False)
    op.create_table('lots',
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('mineral', sa.Text(), nullable=False),
    sa.Column('form', sa.Text(), nullable=False),
    sa.Column('mass_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('origin_kind', sa.Text(), nullable=False),
    sa.Column('origin_participant', sa.Text(), nullable=True),
    sa.Column('origin_country', sa.Text(), nullable=True),
    sa.Column('origin_region', sa.Text(), nullable=True),
    sa.Column('origin_mining_type', sa.Text(), nullable=True),
    sa.Column('custodian', sa.Text(), nullable=False),
    sa.Column('origin_event', sa.Text(), nullable=False),
    sa.Column('origin_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_custody_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('lot_id', name=op.f('pk_lots'))
    )
    op.create_index('ix_lots_origin', 'lots', ['origin_country', 'origin_region'], unique=False)
    op.create_index('ix_lots_origin_participant', 'lots', ['origin_participant'], unique=False)
    op.create_table('participants',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('country', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('mining_type', sa.Text(), nullable=True),
    sa.Column('annual_capacity_kg', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants'))
    )
    op.create_table('shipments',
    sa.Column('shipment_id', sa.Text(), nullable=False),
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('sender', sa.Text(), nullable=False),
    sa.Column('receiver', sa.Text(), nullable=False),
    sa.Column('mass_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('seal', sa.Text(), nullable=True),
    sa.Column('shipped_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('max_transit_days', sa.Integer(), nullable=True),
    sa.Column('transit_countries', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('shipment_id', name=op.f('pk_shipments'))
    )
    op.create_index('ix_shipments_open', 'shipments', ['status', 'shipped_at'], unique=False)
    op.create_table('transformations',
    sa.Column('transformation_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('actor_kind', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outputs', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('transformation_id', name=op.f('pk_transformations'))
    )
    op.create_index('ix_transformations_actor', 'transformations', ['actor', 'occurred_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_transformations_actor', table_name='transformations')
    op.drop_table('transformations')
    op.drop_index('ix_shipments_open', table_name='shipments')
    op.drop_table('shipments')
    op.drop_table('participants')
    op.drop_index('ix_lots_origin_participant', table_name='lots')
    op.drop_index('ix_lots_origin', table_name='lots')
    op.drop_table('lots')
    op.drop_index('ix_lot_holders_participant', table_name='lot_holders')
    op.drop_table('lot_holders')
    op.drop_index('ix_genealogy_child_parent', table_name='genealogy')
    op.drop_table('genealogy')
    op.drop_index('ix_flags_status_severity', table_name='flags')
    op.drop_index('ix_flags_participants', table_name='flags', postgresql_using='gin')
    op.drop_index('ix_flags_lot_ids', table_name='flags', postgresql_using='gin')
    op.drop_table('flags')
    op.drop_index('ix_certifications_participant', table_name='certifications')
    op.drop_table('certifications')
    op.drop_index('ix_cahra_areas_country', table_name='cahra_areas')
    op.drop_table('cahra_areas')
