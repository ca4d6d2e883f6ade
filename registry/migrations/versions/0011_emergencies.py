"""emergencies (应急处置记录单, rules.md §9) and the post_emergency task kind

* ``emergency``: the full record, one row per emergency (registry.models.Emergency).
* ``visit_task.kind``: the CHECK constraint admits ``post_emergency``.

Revision ID: 0011_emergencies
Revises: 0010_incremental_basis
Create Date: 2026-12-06 03:20:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0011_emergencies'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = None

OLD_KINDS = "'first_visit', 'follow_up', 'retry', 'locate', 'discharge_check', 'health_check', 'injection'"
NEW_KINDS = OLD_KINDS + ", 'post_emergency'"


def _kind_check(kinds: str) -> None:
    with op.batch_alter_table('visit_task', schema=None) as batch_op:
        batch_op.drop_constraint('kind_code', type_='check')
        batch_op.create_check_constraint('kind_code', f"kind IN ({kinds})")


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table('emergency',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', text(length=64), nullable=False),
    sa.Column('situations', text(length=16), nullable=False),
    sa.Column('place', text(length=255), nullable=True),
    sa.Column('reporter', text(length=100), nullable=True),
    sa.Column('reported_at', sa.DateTime(), nullable=False),
    sa.Column('report_route', text(length=100), nullable=True),
    sa.Column('reporter_identity', text(length=100), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('scene', text(length=2000), nullable=True),
    sa.Column('measures', text(length=120), nullable=True),
    sa.Column('measures_other', text(length=255), nullable=True),
    sa.Column('participant_doctor', text(length=100), nullable=True),
    sa.Column('participant_psychiatrist', text(length=100), nullable=True),
    sa.Column('participant_nurse', text(length=100), nullable=True),
    sa.Column('participant_police', text(length=100), nullable=True),
    sa.Column('police_organ', text(length=100), nullable=True),
    sa.Column('diagnosis', text(length=100), nullable=True),
    sa.Column('diagnosis_certainty', text(length=16), nullable=True),
    sa.Column('effect', text(length=1000), nullable=True),
    sa.Column('filled_by', text(length=100), nullable=True),
    sa.Column('filled_on', sa.Date(), nullable=True),
    sa.Column('police_signed_by', text(length=100), nullable=True),
    sa.Column('police_signed_at', sa.DateTime(), nullable=True),
    sa.Column('opened_by', text(length=64), nullable=False),
    sa.Column('completed_at', registry.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("diagnosis_certainty IN ('confirmed', 'suspected')", name='diagnosis_certainty_code'),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.patient_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_emergency_patient', 'emergency', ['patient_id', 'reported_at'], unique=False)
    op.create_index('ix_emergency_updated_at', 'emergency', ['updated_at'], unique=False)
    op.create_index('ix_emergency_open', 'emergency', ['completed_at', 'reported_at'], unique=False)
    _kind_check(NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM visit_task WHERE kind = 'post_emergency'")
    _kind_check(OLD_KINDS)
    op.drop_index('ix_emergency_open', table_name='emergency')
    op.drop_index('ix_emergency_updated_at', table_name='emergency')
    op.drop_index('ix_emergency_patient', table_name='emergency')
    op.drop_table('emergency')
