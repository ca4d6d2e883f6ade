"""indicators: indicator snapshots

Revision ID: 0003_indicators
Revises: 0001_registry
Create Date: 2026-11-23 12:10:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0003_indicators'
down_revision = '0001_registry'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('indicator_snapshot',
    sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('counts', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('frozen_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('month', 'variant', 'region_code')
    )


def downgrade() -> None:
    op.drop_table('indicator_snapshot')
