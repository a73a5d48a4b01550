"""reminder sweeps page on (due time, id)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:34:39.392275

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkouts_next_reminder_at'))
        batch_op.create_index('ix_checkouts_next_reminder_at_id', ['next_reminder_at', 'id'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_next_winback_at'))
        batch_op.create_index('ix_customers_next_winback_at_id', ['next_winback_at', 'id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_next_winback_at_id')
        batch_op.create_index(batch_op.f('ix_customers_next_winback_at'), ['next_winback_at'], unique=False)

    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_index('ix_checkouts_next_reminder_at_id')
        batch_op.create_index(batch_op.f('ix_checkouts_next_reminder_at'), ['next_reminder_at'], unique=False)

    
