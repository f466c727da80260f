"""compliance officers: people the operator registers to resolve flags

`compliance_officers` (name, contact, scope: the participant ids they oversee, NULL for all) and
`officer_credentials` (their tokens' ids; revoked ones join `GET /credentials/revoked` with the participants').

Revision ID: d1e7a0c40002
Revises: d1e7a0c40001
Create Date: 2026-12-05 19:00:00+00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd1e7a0c40002'
down_revision: str | None = 'd1e7a0c40001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('compliance_officers',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('contact', sa.Text(), nullable=False),
    sa.Column('scope', sa.ARRAY(sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_officers')),
    sa.UniqueConstraint('seq', name=op.f('uq_compliance_officers_seq'))
    )
    op.create_table('officer_credentials',
    sa.Column('jti', sa.Text(), nullable=False),
    sa.Column('officer_id', sa.Text(), nullable=False),
    sa.Column('kid', sa.Text(), nullable=False),
    sa.Column('scope', sa.ARRAY(sa.Text()), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['kid'], ['signing_keys.kid'], name=op.f('fk_officer_credentials_kid_signing_keys')),
    sa.ForeignKeyConstraint(['officer_id'], ['compliance_officers.id'], name=op.f('fk_officer_credentials_officer_id_compliance_officers')),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_officer_credentials'))
    )
    op.create_index(op.f('ix_officer_credentials_officer_id'), 'officer_credentials', ['officer_id'], unique=False)
    op.create_index('ix_officer_credentials_revoked', 'officer_credentials', ['revoked_at'], unique=False, postgresql_where=sa.text('revoked_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_officer_credentials_revoked', table_name='officer_credentials', postgresql_where=sa.text('revoked_at IS NOT NULL'))
    op.drop_index(op.f('ix_officer_credentials_officer_id'), table_name='officer_credentials')
    op.drop_table('officer_credentials')
    op.drop_table('compliance_officers')
