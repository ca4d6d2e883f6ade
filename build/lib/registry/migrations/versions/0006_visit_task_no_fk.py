"""visit_task without the foreign key to patient

Tasks are derived data regenerated from the record (docs/scheduler.md, decision "visit_task has
no foreign key"): generation only selects existing patients and patients are never deleted, so
the per-row check on every insert (most of the cost of writing 1.5 M tasks) buys nothing.

Revision ID: 0006_visit_task_no_fk
Revises: 0002_schedules
Create Date: 2026-11-23 13:20:00
"""
from alembic import op


revision = '0006_visit_task_no_fk'
down_revision = '0002_schedules'
branch_labels = None
depends_on = None

# SQLite foreign keys are unnamed: batch mode names them by this convention so they can be dropped
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("visit_task", naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint("fk_visit_task_patient_id_patient", type_="foreignkey")
    else:
        op.drop_constraint("visit_task_patient_id_fkey", "visit_task", type_="foreignkey")  # PostgreSQL's name


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("visit_task") as batch_op:
            batch_op.create_foreign_key("fk_visit_task_patient_id_patient", "patient", ["patient_id"], ["patient_id"])
    else:
        op.create_foreign_key("visit_task_patient_id_fkey", "visit_task", "patient", ["patient_id"], ["patient_id"])
