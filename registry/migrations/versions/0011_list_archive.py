"""the weekly 五单 kept as issued (rules.md §7, issue 15): issues, files, rows, sign-ins, downloads

* ``list_issue``: one issue (version) of a township's week, who issued it and when, its counts.
* ``list_issue_file``: each issued PDF/XLSX, its bytes and SHA-256.
* ``list_issue_row``: each row of each list as issued (JSON), the target of paper sign-ins.
* ``list_sign_in``: a paper sign-in result recorded against an archived row.
* ``list_download``: who downloaded which list file of which week, when, and how.

Revision ID: 0011_list_archive
Revises: 0010_incremental_basis
Create Date: 2026-12-06 03:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import registry.models


revision = '0011_list_archive'
down_revision = '0010_incremental_basis'
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = registry.models.UTCDateTime


def upgrade() -> None:
    op.create_table('list_issue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('township_code', S(length=32), nullable=False),
    sa.Column('week', sa.Date(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('issued_at', T(timezone=True), nullable=False),
    sa.Column('issued_by', S(length=120), nullable=False),
    sa.Column('counts', S(length=4000), nullable=False),
    sa.Column('reason', S(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('township_code', 'week', 'version', name='uq_list_issue_week_version')
    )
    op.create_table('list_issue_file',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('slug', S(length=20), nullable=False),
    sa.Column('fmt', S(length=8), nullable=False),
    sa.Column('file_name', S(length=200), nullable=False),
    sa.Column('sha256', S(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['list_issue.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issue_id', 'slug', 'fmt', name='uq_list_issue_file')
    )
    op.create_table('list_issue_row',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('slug', S(length=20), nullable=False),
    sa.Column('section', S(length=10), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('patient_id', S(length=64), nullable=False),
    sa.Column('village', S(length=100), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['list_issue.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('list_issue_row', schema=None) as batch_op:
        batch_op.create_index('ix_list_issue_row_issue', ['issue_id', 'slug', 'position'], unique=False)
    op.create_table('list_sign_in',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('row_id', sa.Integer(), nullable=False),
    sa.Column('signed_by', S(length=100), nullable=False),
    sa.Column('visited', sa.Boolean(), nullable=False),
    sa.Column('signed_on', sa.Date(), nullable=False),
    sa.Column('note', S(length=500), nullable=True),
    sa.Column('recorded_by', S(length=120), nullable=False),
    sa.Column('recorded_at', T(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['row_id'], ['list_issue_row.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('list_sign_in', schema=None) as batch_op:
        batch_op.create_index('ix_list_sign_in_row', ['row_id'], unique=False)
    op.create_table('list_download',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=True),
    sa.Column('township_code', S(length=32), nullable=False),
    sa.Column('week', sa.Date(), nullable=False),
    sa.Column('slug', S(length=20), nullable=False),
    sa.Column('fmt', S(length=8), nullable=False),
    sa.Column('sha256', S(length=64), nullable=False),
    sa.Column('actor', S(length=120), nullable=False),
    sa.Column('role', S(length=30), nullable=True),
    sa.Column('channel', S(length=10), nullable=False),
    sa.Column('source', S(length=100), nullable=True),
    sa.Column('downloaded_at', T(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['list_issue_file.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('list_download', schema=None) as batch_op:
        batch_op.create_index('ix_list_download_week', ['township_code', 'week'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('list_download', schema=None) as batch_op:
        batch_op.drop_index('ix_list_download_week')
    op.drop_table('list_download')
    with op.batch_alter_table('list_sign_in', schema=None) as batch_op:
        batch_op.drop_index('ix_list_sign_in_row')
    op.drop_table('list_sign_in')
    with op.batch_alter_table('list_issue_row', schema=None) as batch_op:
        batch_op.drop_index('ix_list_issue_row_issue')
    op.drop_table('list_issue_row')
    op.drop_table('list_issue_file')
    op.drop_table('list_issue')
