"""login backoff and idle sessions (issue 18)

* ``login_failure``: one row per failed login (account, address, time), so the backoff survives a
  restart and is shared by every worker.
* ``web_session.last_seen_at``: the session's last request, for the idle timeout.

Revision ID: 0010_access_logins
Revises: 0004_accounts
Create Date: 2026-12-06 01:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0010_access_logins'
down_revision = '0004_accounts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_failure',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', registry.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('login_failure', schema=None) as batch_op:
        batch_op.create_index('ix_login_failure_username_at', ['username', 'at'], unique=False)
        batch_op.create_index('ix_login_failure_source_at', ['source', 'at'], unique=False)
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seen_at', registry.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
    with op.batch_alter_table('login_failure', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failure_source_at')
        batch_op.drop_index('ix_login_failure_username_at')
    op.drop_table('login_failure')
