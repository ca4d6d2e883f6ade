"""the whole national forms: 个人信息补充表 columns on patient, follow_up.family_signature, injection

* ``patient``: guardian relation and address, village contact and phone, household type,
  employment, first onset, past lock-up, outpatient treatment, admissions, diagnosing hospital
  (the 2018 个人信息补充表; coded columns with CHECK constraints from ``registry.codes``).
* ``follow_up.family_signature``: 患者(家属)签名 (rules.md §3 "signatures").
* ``injection``: the LAI history, one row per injection (contract.md injections.csv); existing
  plans get one row for their last injection, so ``patient.lai_last_on`` = the latest row.

Revision ID: 0011_full_forms
Revises: 0010_incremental_basis
Create Date: 2026-12-06 03:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0011_full_forms'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = None


def _check(column: str, values: list[int]) -> str:
    return f"{column} IN ({', '.join(str(v) for v in values)})"


def upgrade() -> None:
    op.create_table('injection',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('given_on', sa.Date(), nullable=False),
    sa.Column('drug', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('dose', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('updated_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.patient_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('patient_id', 'given_on', name='uq_injection')
    )
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.add_column(sa.Column('family_signature', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))

    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guardian_relation', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(sa.Column('guardian_address', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('village_contact', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('village_contact_phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('household_type', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('employment', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('first_onset_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('past_lockup', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('outpatient_treatment', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('admissions', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('diagnosing_hospital', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.create_check_constraint('household_type_code', _check('household_type', [1, 2]))
        batch_op.create_check_constraint('employment_code', _check('employment', list(range(1, 10))))
        batch_op.create_check_constraint('past_lockup_code', _check('past_lockup', [1, 2, 3]))
        batch_op.create_check_constraint('outpatient_treatment_code', _check('outpatient_treatment', [1, 2, 3]))
        batch_op.create_check_constraint('admissions_nonneg', 'admissions IS NULL OR admissions >= 0')

    # the LAI history starts with each plan's last injection (patient.lai_last_on = the latest row)
    op.execute("INSERT INTO injection (patient_id, given_on, drug, dose, updated_at) "
               "SELECT patient_id, lai_last_on, lai_drug, lai_dose, CURRENT_TIMESTAMP FROM patient "
               "WHERE lai_last_on IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        for name in ('admissions_nonneg', 'outpatient_treatment_code', 'past_lockup_code', 'employment_code', 'household_type_code'):
            batch_op.drop_constraint(name, type_='check')
        for column in ('diagnosing_hospital', 'admissions', 'outpatient_treatment', 'past_lockup', 'first_onset_on',
                       'employment', 'household_type', 'village_contact_phone', 'village_contact', 'guardian_address',
                       'guardian_relation'):
            batch_op.drop_column(column)

    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.drop_column('family_signature')

    op.drop_table('injection')
