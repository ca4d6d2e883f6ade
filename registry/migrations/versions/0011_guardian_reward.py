"""以奖代补 guardian-years (rules.md §11): table ``guardian_year``

One row per (patient, year): the enrolled part of the year, the status (provisional, final,
approved, withheld, paid), civil affairs' decision and reason, the payment date and amount.

Revision ID: 0011_guardian_reward
Revises: 0010_incremental_basis
Create Date: 2026-12-06 03:20:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0011_guardian_reward'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('guardian_year',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('enrolled_from', sa.Date(), nullable=False),
    sa.Column('enrolled_to', sa.Date(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('decided_at', registry.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('paid_amount', sa.Integer(), nullable=True),
    sa.Column('enrolled_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('created_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('provisional', 'final', 'approved', 'withheld', 'paid')", name='status_code'),
    sa.CheckConstraint('enrolled_from <= enrolled_to', name='guardian_year_period'),
    sa.CheckConstraint('paid_amount IS NULL OR paid_amount > 0', name='guardian_year_amount_positive'),
    sa.CheckConstraint("status <> 'paid' OR (paid_on IS NOT NULL AND paid_amount IS NOT NULL)",
                       name='guardian_year_paid_fields'),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.patient_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('patient_id', 'year', name='uq_guardian_year')
    )
    with op.batch_alter_table('guardian_year', schema=None) as batch_op:
        batch_op.create_index('ix_guardian_year_year', ['year'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('guardian_year', schema=None) as batch_op:
        batch_op.drop_index('ix_guardian_year_year')
    op.drop_table('guardian_year')
