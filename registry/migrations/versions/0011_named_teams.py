"""named teams: dated care-team assignments, regional primaries, accounts linked to members (issue 14)

* ``care_team_assignment``: a surrogate ``id``, ``role``, ``from_on``, ``to_on`` (rules.md §6.1).
  Existing rows (patient, member) become open assignments in the member's role from the patient's
  registration date.
* ``team_member.primary``: the region's primary member for its role.
* ``app_user.member_id`` (FK team_member) and ``app_user.supervisor``; roles ``governance`` (综治)
  and ``village`` (村(社区)). On SQLite the account table is rebuilt (its CHECK changes), so the web
  sessions end (everybody logs in again).

Revision ID: 0011_named_teams
Revises: 0010_incremental_basis
Create Date: 2026-12-06 03:20:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011_named_teams'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = '0004_accounts'  # app_user

TEAM_ROLES = "role IN ('doctor', 'police', 'village', 'civil_affairs', 'disability', 'volunteer')"
USER_ROLES_OLD = "role IN ('county_admin', 'township_doctor', 'police', 'civil_affairs')"
USER_ROLES_NEW = "role IN ('county_admin', 'township_doctor', 'police', 'civil_affairs', 'governance', 'village')"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # a plain ADD COLUMN (SQLite would otherwise rebuild team_member, which other tables reference)
    op.add_column('team_member', sa.Column('primary', sa.Boolean(), nullable=False, server_default=sa.false()))
    if not sqlite:
        op.alter_column('team_member', 'primary', server_default=None)

    op.create_table(
        'care_team_assignment_new',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('from_on', sa.Date(), nullable=False),
        sa.Column('to_on', sa.Date(), nullable=True),
        sa.CheckConstraint(TEAM_ROLES, name='role_code'),
        sa.CheckConstraint('to_on IS NULL OR to_on >= from_on', name='assignment_dates_order'),
        sa.ForeignKeyConstraint(['member_id'], ['team_member.member_id'], ),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.patient_id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('patient_id', 'member_id', 'role', 'from_on', name='uq_care_team_assignment'),
    )
    op.execute(
        "INSERT INTO care_team_assignment_new (patient_id, member_id, role, from_on, to_on) "
        "SELECT a.patient_id, a.member_id, m.role, p.registered_on, NULL FROM care_team_assignment a "
        "JOIN team_member m ON m.member_id = a.member_id JOIN patient p ON p.patient_id = a.patient_id"
    )
    op.drop_table('care_team_assignment')
    op.rename_table('care_team_assignment_new', 'care_team_assignment')
    with op.batch_alter_table('care_team_assignment', schema=None) as batch_op:
        batch_op.create_index('ix_care_team_assignment_patient_role', ['patient_id', 'role'], unique=False)
        batch_op.create_index('ix_care_team_assignment_member', ['member_id'], unique=False)

    if sqlite:  # SQLite rebuilds app_user (its CHECK changes): the sessions that reference it end, all log in again
        op.execute("DELETE FROM web_session")
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('supervisor', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_foreign_key('fk_app_user_member_id', 'team_member', ['member_id'], ['member_id'])
        batch_op.drop_constraint('role_code', type_='check')
        batch_op.create_check_constraint('role_code', USER_ROLES_NEW)
    if not sqlite:
        op.alter_column('app_user', 'supervisor', server_default=None)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DELETE FROM web_session")
    op.execute("DELETE FROM app_user WHERE role IN ('governance', 'village')")
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_constraint('role_code', type_='check')
        batch_op.create_check_constraint('role_code', USER_ROLES_OLD)
        batch_op.drop_constraint('fk_app_user_member_id', type_='foreignkey')
        batch_op.drop_column('supervisor')
        batch_op.drop_column('member_id')
    with op.batch_alter_table('care_team_assignment', schema=None) as batch_op:
        batch_op.drop_index('ix_care_team_assignment_member')
        batch_op.drop_index('ix_care_team_assignment_patient_role')
    op.create_table(
        'care_team_assignment_old',
        sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('member_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['team_member.member_id'], ),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.patient_id'], ),
        sa.PrimaryKeyConstraint('patient_id', 'member_id'),
    )
    op.execute("INSERT INTO care_team_assignment_old (patient_id, member_id) "
               "SELECT DISTINCT patient_id, member_id FROM care_team_assignment WHERE to_on IS NULL")
    op.drop_table('care_team_assignment')
    op.rename_table('care_team_assignment_old', 'care_team_assignment')
    op.drop_column('team_member', 'primary')  # SQLite ≥ 3.35: a plain DROP COLUMN
