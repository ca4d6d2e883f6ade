"""indicators: patient-month state (+ updated_at indexes for its freshness check)

Revision ID: 0008_month_state
Revises: 0003_indicators
Depends on: 0007_follow_up_updated_at (follow_up.updated_at)
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = "0008_month_state"
down_revision = "0003_indicators"
branch_labels = None
depends_on = "0007_follow_up_updated_at"


def upgrade() -> None:
    op.create_table(
        "patient_month_state",
        sa.Column("year_month", sa.Integer(), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("village_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("registered_on", sa.Date(), nullable=False),
        sa.Column("diagnosis", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("mask", sa.Integer(), nullable=False),
        sa.Column("latest_key", sa.BigInteger(), nullable=True),
        sa.Column("n_complete", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year_month", "patient_id"),
    )
    op.create_table(
        "patient_month_state_build",
        sa.Column("year_month", sa.Integer(), nullable=False),
        sa.Column("built_at", registry.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("health_check_id", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year_month"),
    )
    op.create_index("ix_follow_up_updated_at", "follow_up", ["updated_at"], unique=False)
    op.create_index("ix_patient_updated_at", "patient", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_patient_updated_at", table_name="patient")
    op.drop_index("ix_follow_up_updated_at", table_name="follow_up")
    op.drop_table("patient_month_state_build")
    op.drop_table("patient_month_state")
