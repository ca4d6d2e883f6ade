"""moves: one pending move per patient, kept by a partial unique index on both databases

Revision ID: 0014_one_pending_move
Revises: 0011_patient_history

The write path checks for a pending move (``patient_edits.check_transfer_request``) and, on
PostgreSQL, locks the patient's row first; SQLite has no row lock, so two concurrent requests
could both pass the check. ``uq_patient_transfer_pending`` makes the database refuse the second
(the write path answers 409 ``TRANSFER_PENDING`` as for the check). The check has always held, so
existing rows satisfy the index.
"""
from alembic import op
import sqlalchemy as sa


revision = '0014_one_pending_move'
down_revision = '0011_patient_history'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('uq_patient_transfer_pending', 'patient_transfer', ['patient_id'], unique=True,
                    postgresql_where=sa.text("outcome = 'pending'"), sqlite_where=sa.text("outcome = 'pending'"))


def downgrade() -> None:
    op.drop_index('uq_patient_transfer_pending', table_name='patient_transfer')
