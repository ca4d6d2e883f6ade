"""indicators: the patient-month state stores each patient's count flags (rates ≤ 3× the bare pass)

Revision ID: 0013_state_flags
Revises: 0010_phone_idempotency

``patient_month_state.flags``: the bit of every population and numerator the patient is in at the
month's end (``registry.rates.indicators.flags_expression``), and the index (year_month,
village_code, flags) that counts a month with one index-only scan. Rows built before have no
flags: they and their builds are deleted, so the next use rebuilds the month (``month_state.ensure``;
``state_version`` carries ``STATE_FORMAT`` too, so they could not be used anyway).
"""
from alembic import op
import sqlalchemy as sa


revision = '0013_state_flags'
down_revision = '0010_phone_idempotency'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM patient_month_state_build")
    op.execute("DELETE FROM patient_month_state")
    with op.batch_alter_table('patient_month_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flags', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('patient_month_state', schema=None) as batch_op:
        batch_op.alter_column('flags', server_default=None)
    op.create_index('ix_patient_month_state_counts', 'patient_month_state', ['year_month', 'village_code', 'flags'])


def downgrade() -> None:
    op.drop_index('ix_patient_month_state_counts', table_name='patient_month_state')
    op.execute("DELETE FROM patient_month_state_build")
    op.execute("DELETE FROM patient_month_state")
    with op.batch_alter_table('patient_month_state', schema=None) as batch_op:
        batch_op.drop_column('flags')
