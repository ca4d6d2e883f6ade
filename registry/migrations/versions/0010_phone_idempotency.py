"""web: follow-up idempotency key (issue 16, forms that never lose work)

Revision ID: 0010_phone_idempotency
Revises: 0009_rules_version

The follow-up form carries a key generated when it is opened; a retried submit with the same
key finds the first row instead of recording the visit again. Existing rows keep NULL.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010_phone_idempotency'
down_revision = '0009_rules_version'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_follow_up_idempotency_key', ['idempotency_key'])


def downgrade() -> None:
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.drop_constraint('uq_follow_up_idempotency_key', type_='unique')
        batch_op.drop_column('idempotency_key')
