"""attendance per person on a joint visit (rules.md §6.2 [2026-12], contract.md participants.csv)

Revision ID: 0015_attendance_per_person
Revises: 0014_one_pending_move
Depends on: 0011_attendance (the ``reason`` / ``source`` / ``recorded_*`` columns)

``follow_up_participant`` was keyed by (follow-up, role): a second officer on one visit could not
be recorded, and an officer's own record overwrote the row the doctor recorded for a colleague.
Now one row per (follow-up, role, person):

* a surrogate ``id`` primary key (existing rows are numbered on the way);
* ``uq_follow_up_participant_person`` UNIQUE (follow_up_id, role, member_id): one row per named
  member of a role;
* ``uq_follow_up_participant_unnamed``: a partial unique index (follow_up_id, role) WHERE
  member_id IS NULL — at most one unnamed row per role (the doctor's "police present" without a
  name).

Existing rows are kept as they are: the old key gave at most one row per (follow-up, role), so they
satisfy both. SQLite rebuilds the table (batch mode, from the table as it stood, so the copy takes
only the new key); PostgreSQL alters it in place.
"""
from alembic import op
import sqlalchemy as sa
import registry.models


revision = '0015_attendance_per_person'
down_revision = '0014_one_pending_move'
branch_labels = None
depends_on = '0011_attendance'

TABLE = 'follow_up_participant'
UNNAMED = sa.text("member_id IS NULL")


def _table(*, old_key: bool) -> sa.Table:
    """The table as 0001 and 0011_attendance left it; without ``old_key`` its columns carry no key
    (the batch copy then takes only the key it is given)."""
    return sa.Table(
        TABLE, sa.MetaData(),
        sa.Column('follow_up_id', sa.Integer(), sa.ForeignKey('follow_up.id'), nullable=False, primary_key=old_key),
        sa.Column('role', sa.String(length=20), nullable=False, primary_key=old_key),
        sa.Column('member_id', sa.String(length=64), sa.ForeignKey('team_member.member_id'), nullable=True),
        sa.Column('attended', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('recorded_by', sa.String(length=100), nullable=True),
        sa.Column('recorded_at', registry.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('doctor', 'police', 'village', 'civil_affairs', 'disability', 'volunteer')",
                           name='role_code'),
        sa.CheckConstraint("source IN ('doctor', 'self')", name='source_code'),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('follow_up_participant_pkey', TABLE, type_='primary')
        op.execute(f"ALTER TABLE {TABLE} ADD COLUMN id SERIAL PRIMARY KEY")
        op.create_unique_constraint('uq_follow_up_participant_person', TABLE, ['follow_up_id', 'role', 'member_id'])
    else:
        with op.batch_alter_table(TABLE, copy_from=_table(old_key=False), recreate='always') as batch_op:
            # INTEGER PRIMARY KEY: SQLite numbers the rows copied
            batch_op.add_column(sa.Column('id', sa.Integer(), nullable=False), insert_before='follow_up_id')
            batch_op.create_primary_key('follow_up_participant_pkey', ['id'])
            batch_op.create_unique_constraint('uq_follow_up_participant_person', ['follow_up_id', 'role', 'member_id'])
    op.create_index('uq_follow_up_participant_unnamed', TABLE, ['follow_up_id', 'role'], unique=True,
                    postgresql_where=UNNAMED, sqlite_where=UNNAMED)


def downgrade() -> None:
    """Back to one row per (follow-up, role): per role the unnamed row is kept, else the lowest id."""
    op.drop_index('uq_follow_up_participant_unnamed', table_name=TABLE)
    op.execute(f"DELETE FROM {TABLE} WHERE id NOT IN (SELECT (SELECT k.id FROM {TABLE} k WHERE k.follow_up_id = g.follow_up_id "
               f"AND k.role = g.role ORDER BY (k.member_id IS NOT NULL), k.id LIMIT 1) "
               f"FROM (SELECT DISTINCT follow_up_id, role FROM {TABLE}) g)")
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('uq_follow_up_participant_person', TABLE, type_='unique')
        op.drop_column(TABLE, 'id')
        op.create_primary_key('follow_up_participant_pkey', TABLE, ['follow_up_id', 'role'])
    else:
        new = _table(old_key=False)
        new.append_column(sa.Column('id', sa.Integer(), nullable=False))
        with op.batch_alter_table(TABLE, copy_from=new, recreate='always') as batch_op:
            batch_op.drop_column('id')
            batch_op.create_primary_key('follow_up_participant_pkey', ['follow_up_id', 'role'])
