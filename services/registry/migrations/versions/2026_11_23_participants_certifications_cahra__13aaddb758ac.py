"""participants certifications cahra credentials

Revision ID: 13aaddb758ac
Revises: 917e5a94edab
Create Date: 2026-11-23 14:20:50.505735+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '13aaddb758ac'
down_revision: str | None = '917e5a94edab'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cahra_areas',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('country', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('conflict_affected', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('high_risk', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('effective_to', sa.Date(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cahra_areas')),
    sa.UniqueConstraint('seq', name=op.f('uq_cahra_areas_seq'))
    )
    op.create_index('ix_cahra_areas_country', 'cahra_areas', ['country', 'region', 'effective_from'], unique=False)
    op.create_table('participants',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('country', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('identifiers', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('rmi_smelter_id', sa.Text(), nullable=True),
    sa.Column('mining_type', sa.Text(), nullable=True),
    sa.Column('annual_capacity_kg', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('version', sa.BigInteger(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants')),
    sa.UniqueConstraint('rmi_smelter_id', name=op.f('uq_participants_rmi_smelter_id')),
    sa.UniqueConstraint('seq', name=op.f('uq_participants_seq'))
    )
    op.create_index('ix_participants_kind_country', 'participants', ['kind', 'country', 'seq'], unique=False)
    op.create_table('signing_keys',
    sa.Column('kid', sa.Text(), nullable=False),
    sa.Column('private_pem', sa.LargeBinary(), nullable=False),
    sa.Column('public_jwk', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_keys'))
    )
    op.create_table('certifications',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('participant_id', sa.Text(), nullable=False),
    sa.Column('scheme', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=True),
    sa.Column('level', sa.Text(), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('reference', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_certifications_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certifications')),
    sa.UniqueConstraint('seq', name=op.f('uq_certifications_seq'))
    )
    op.create_index('ix_certifications_participant', 'certifications', ['participant_id', 'scheme', 'seq'], unique=False)
    op.create_table('credentials',
    sa.Column('jti', sa.Text(), nullable=False),
    sa.Column('participant_id', sa.Text(), nullable=False),
    sa.Column('kid', sa.Text(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['kid'], ['signing_keys.kid'], name=op.f('fk_credentials_kid_signing_keys')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_credentials_participant_id_participants')),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_credentials'))
    )
    op.create_index(op.f('ix_credentials_participant_id'), 'credentials', ['participant_id'], unique=False)
    op.create_index('ix_credentials_revoked', 'credentials', ['revoked_at'], unique=False, postgresql_where=sa.text('revoked_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_credentials_revoked', table_name='credentials', postgresql_where=sa.text('revoked_at IS NOT NULL'))
    op.drop_index(op.f('ix_credentials_participant_id'), table_name='credentials')
    op.drop_table('credentials')
    op.drop_index('ix_certifications_participant', table_name='certifications')
    op.drop_table('certifications')
    op.drop_table('signing_keys')
    op.drop_index('ix_participants_kind_country', table_name='participants')
    op.drop_table('participants')
    op.drop_index('ix_cahra_areas_country', table_name='cahra_areas')
    op.drop_table('cahra_areas')
