"""lots shipments genealogy idempotency

Revision ID: 2711ec345fce
Revises: 83e0f351a695
Create Date: 2026-11-23 14:33:15.613989+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '2711ec345fce'
down_revision: str | None = '83e0f351a695'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('request_hash', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('actor', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('lots',
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('created_seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('mineral', sa.Text(), nullable=False),
    sa.Column('form', sa.Text(), nullable=False),
    sa.Column('mass_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('remaining_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('custodian', sa.Text(), nullable=False),
    sa.Column('origin_kind', sa.Text(), nullable=False),
    sa.Column('origin_participant', sa.Text(), nullable=True),
    sa.Column('origin_country', sa.Text(), nullable=True),
    sa.Column('origin_region', sa.Text(), nullable=True),
    sa.Column('origin_mine_name', sa.Text(), nullable=True),
    sa.Column('origin_mining_type', sa.Text(), nullable=True),
    sa.Column('produced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tag', sa.Text(), nullable=True),
    sa.Column('seal', sa.Text(), nullable=True),
    sa.Column('head_hash', sa.LargeBinary(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('lot_id', name=op.f('pk_lots')),
    sa.UniqueConstraint('created_seq', name=op.f('uq_lots_created_seq'))
    )
    op.create_index('ix_lots_custodian', 'lots', ['custodian', 'created_seq'], unique=False)
    op.create_index('ix_lots_mineral_status', 'lots', ['mineral', 'status', 'created_seq'], unique=False)
    op.create_table('participants',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('country', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('mining_type', sa.Text(), nullable=True),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants'))
    )
    op.create_table('processed_events',
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('source', 'id', name=op.f('pk_processed_events'))
    )
    op.create_table('rejected_attempts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('request', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_attempts')),
    sa.UniqueConstraint('event_id', name=op.f('uq_rejected_attempts_event_id'))
    )
    op.create_index('ix_rejected_attempts_actor', 'rejected_attempts', ['actor', 'at'], unique=False)
    op.create_table('transformations',
    sa.Column('transformation_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('actor_kind', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('inputs', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('outputs', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('transformation_id', name=op.f('pk_transformations'))
    )
    op.create_table('consumptions',
    sa.Column('consumption_id', sa.Text(), nullable=False),
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('product', sa.Text(), nullable=False),
    sa.Column('mass_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('consumed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.lot_id'], name=op.f('fk_consumptions_lot_id_lots')),
    sa.PrimaryKeyConstraint('consumption_id', name=op.f('pk_consumptions'))
    )
    op.create_index('ix_consumptions_lot', 'consumptions', ['lot_id'], unique=False)
    op.create_table('genealogy',
    sa.Column('parent', sa.Text(), nullable=False),
    sa.Column('child', sa.Text(), nullable=False),
    sa.Column('transformation_id', sa.Text(), nullable=False),
    sa.Column('mass_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.ForeignKeyConstraint(['child'], ['lots.lot_id'], name=op.f('fk_genealogy_child_lots')),
    sa.ForeignKeyConstraint(['parent'], ['lots.lot_id'], name=op.f('fk_genealogy_parent_lots')),
    sa.PrimaryKeyConstraint('parent', 'child', 'transformation_id', name=op.f('pk_genealogy'))
    )
    op.create_index('ix_genealogy_child_parent', 'genealogy', ['child', 'parent'], unique=False)
    op.create_table('lot_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('prev_hash', sa.LargeBinary(), nullable=False),
    sa.Column('hash', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.lot_id'], name=op.f('fk_lot_events_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_lot_events_event_id')),
    sa.UniqueConstraint('lot_id', 'seq', name=op.f('uq_lot_events_lot_id'))
    )
    op.create_table('lot_holders',
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('participant_id', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.lot_id'], name=op.f('fk_lot_holders_lot_id_lots')),
    sa.PrimaryKeyConstraint('lot_id', 'participant_id', name=op.f('pk_lot_holders'))
    )
    op.create_index('ix_lot_holders_participant', 'lot_holders', ['participant_id', 'lot_id'], unique=False)
    op.create_table('shipments',
    sa.Column('shipment_id', sa.Text(), nullable=False),
    sa.Column('lot_id', sa.Text(), nullable=False),
    sa.Column('from_participant', sa.Text(), nullable=False),
    sa.Column('to_participant', sa.Text(), nullable=False),
    sa.Column('mass_kg', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('shipped_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seal', sa.Text(), nullable=True),
    sa.Column('transit_countries', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('max_transit_days', sa.Integer(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_mass_kg', sa.Numeric(precision=18, scale=3), nullable=True),
    sa.Column('received_seal', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.lot_id'], name=op.f('fk_shipments_lot_id_lots')),
    sa.PrimaryKeyConstraint('shipment_id', name=op.f('pk_shipments'))
    )
    op.create_index('ix_shipments_lot', 'shipments', ['lot_id'], unique=False)
    op.create_index('ix_shipments_to', 'shipments', ['to_participant', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_shipments_to', table_name='shipments')
    op.drop_index('ix_shipments_lot', table_name='shipments')
    op.drop_table('shipments')
    op.drop_index('ix_lot_holders_participant', table_name='lot_holders')
    op.drop_table('lot_holders')
    op.drop_table('lot_events')
    op.drop_index('ix_genealogy_child_parent', table_name='genealogy')
    op.drop_table('genealogy')
    op.drop_index('ix_consumptions_lot', table_name='consumptions')
    op.drop_table('consumptions')
    op.drop_table('transformations')
    op.drop_index('ix_rejected_attempts_actor', table_name='rejected_attempts')
    op.drop_table('rejected_attempts')
    op.drop_table('processed_events')
    op.drop_table('participants')
    op.drop_index('ix_lots_mineral_status', table_name='lots')
    op.drop_index('ix_lots_custodian', table_name='lots')
    op.drop_table('lots')
    op.drop_table('idempotency_keys')
