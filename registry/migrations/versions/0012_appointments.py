"""appointments for joint visits (rules.md §6.1, issue 14)

* ``appointment``: the doctor's proposed local date and time (and place) for an open joint task.
* ``appointment_reply``: each named member's answer (confirmed / declined with a reason).

Revision ID: 0012_appointments
Revises: 0011_named_teams
Create Date: 2026-12-06 04:45:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0012_appointments'
down_revision = '0011_named_teams'
branch_labels = None
depends_on = '0011_attendance'  # visit_task rebuilt there on SQLite before it is referenced

TEAM_ROLES = "role IN ('doctor', 'police', 'village', 'civil_affairs', 'disability', 'volunteer')"


def upgrade() -> None:
    op.create_table(
        'appointment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=False),
        sa.Column('proposed_at', sa.DateTime(), nullable=False),
        sa.Column('place', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('proposed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('created_at', registry.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['task_id'], ['visit_task.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.create_index('ix_appointment_task', ['task_id'], unique=False)
    op.create_table(
        'appointment_reply',
        sa.Column('appointment_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('answer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('answered_at', registry.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(TEAM_ROLES, name='role_code'),
        sa.CheckConstraint("answer IN ('confirmed', 'declined')", name='answer_code'),
        sa.ForeignKeyConstraint(['appointment_id'], ['appointment.id'], ),
        sa.ForeignKeyConstraint(['member_id'], ['team_member.member_id'], ),
        sa.PrimaryKeyConstraint('appointment_id', 'member_id'),
    )


def downgrade() -> None:
    op.drop_table('appointment_reply')
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.drop_index('ix_appointment_task')
    op.drop_table('appointment')
