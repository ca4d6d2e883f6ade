"""real-time alerts (rules.md §12): alert, alert_read, alert_scan

* ``alert``: one row per event, unique on (kind, source_id) — each event alerts once;
* ``alert_read``: a user's dismissed in-app notices;
* ``alert_scan``: the detector's watermark (one row).

Revision ID: 0012_alerts
Revises: 0010_incremental_basis
Create Date: 2026-12-06 04:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0012_alerts'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('township_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('event_on', sa.Date(), nullable=False),
    sa.Column('created_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queued_at', registry.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'source_id', name='uq_alert_event')
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index('ix_alert_township_created', ['township_code', 'created_at'], unique=False)
        batch_op.create_index('ix_alert_queued', ['queued_at'], unique=False)
    op.create_table('alert_read',
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('read_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alert.id'], ),
    sa.PrimaryKeyConstraint('alert_id', 'username')
    )
    op.create_table('alert_scan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scanned_from', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('alert_scan')
    op.drop_table('alert_read')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_queued')
        batch_op.drop_index('ix_alert_township_created')
    op.drop_table('alert')
