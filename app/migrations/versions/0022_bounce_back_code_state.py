"""bounce-back code state: why a code is taken back (issued_codes.end_reason) and when it was used (issued_codes.used_at)

Revision ID: 0022
Revises: 0021

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds two nullable columns, which the previous release does not read.)
"""
from alembic import op
import sqlalchemy as sa

import app.models


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('end_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('used_at', app.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_column('used_at')
        batch_op.drop_column('end_reason')
