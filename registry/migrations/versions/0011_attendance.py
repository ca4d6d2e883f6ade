"""attendance per person and the joint-visit outcome (rules.md §6.2, issue 14)

* ``follow_up_participant``: ``reason`` (absent with a reason is valid), ``source`` (doctor | self:
  the attendee's own record wins for the row), ``recorded_by``, ``recorded_at``. Existing rows
  were recorded by the doctor.
* ``visit_task``: ``closed_by`` (the follow-up that closed a visit task), ``joint_outcome``
  (到位 complete / 联合未到位 incomplete) and ``missing_roles``; index on ``closed_by``.

Revision ID: 0011_attendance
Revises: 0010_incremental_basis
Create Date: 2026-12-06 03:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0011_attendance'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('follow_up_participant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('recorded_at', registry.models.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE follow_up_participant SET source = 'doctor'")
    with op.batch_alter_table('follow_up_participant', schema=None) as batch_op:
        batch_op.alter_column('source', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False)
        batch_op.create_check_constraint('source_code', "source IN ('doctor', 'self')")

    with op.batch_alter_table('visit_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('joint_outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('missing_roles', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_check_constraint('joint_outcome_code', "joint_outcome IN ('complete', 'incomplete')")
        batch_op.create_index('ix_visit_task_closed_by', ['closed_by'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('visit_task', schema=None) as batch_op:
        batch_op.drop_index('ix_visit_task_closed_by')
        batch_op.drop_constraint('joint_outcome_code', type_='check')
        batch_op.drop_column('missing_roles')
        batch_op.drop_column('joint_outcome')
        batch_op.drop_column('closed_by')

    with op.batch_alter_table('follow_up_participant', schema=None) as batch_op:
        batch_op.drop_constraint('source_code', type_='check')
        batch_op.drop_column('recorded_at')
        batch_op.drop_column('recorded_by')
        batch_op.drop_column('source')
        batch_op.drop_column('reason')
