"""indicators: derived data carries its rule version (patient-month state builds, frozen snapshots)

Revision ID: 0009_rules_version
Revises: 0008_month_state

Existing rows were computed by the rules of ``registry.rules.RULES_VERSION`` 1 (issue 12 moved
the rules without changing them): they are marked ``rules-1`` and stay current. A later rule
version makes them stale (month state rebuilt, snapshots recomputed on the next freeze).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009_rules_version'
down_revision = '0008_month_state'
branch_labels = None
depends_on = None

EXISTING_ROWS_VERSION = "rules-1"  # registry.rules.rules_version() when this migration was written
TABLES = ("indicator_snapshot", "patient_month_state_build")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('rules_version', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False,
                                          server_default=EXISTING_ROWS_VERSION))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('rules_version', server_default=None)


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('rules_version')
