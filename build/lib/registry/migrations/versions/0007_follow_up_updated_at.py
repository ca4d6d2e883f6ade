"""follow_up.updated_at: when a follow-up last changed

Revision ID: 0007_follow_up_updated_at
Revises: 0001_registry
"""
from alembic import op
import sqlalchemy as sa

import registry.models

revision = "0007_follow_up_updated_at"
down_revision = "0001_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("follow_up", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", registry.models.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE follow_up SET updated_at = entered_at")
    with op.batch_alter_table("follow_up", schema=None) as batch_op:
        batch_op.alter_column("updated_at", existing_type=registry.models.UTCDateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("follow_up", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
