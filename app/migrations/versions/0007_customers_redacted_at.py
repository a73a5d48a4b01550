"""customers redacted_at

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 00:01:02.548945

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redacted_at', app.models.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('redacted_at')

