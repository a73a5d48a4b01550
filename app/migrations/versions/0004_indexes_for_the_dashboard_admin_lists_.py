"""indexes for the dashboard, admin lists and the double opt-in sweep

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:46:44.627906

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_shop_id_created_at', ['shop_id', 'created_at'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_shop_id_paid_at', ['shop_id', 'paid_at'], unique=False)

    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_redemptions_shop_id_created_at', ['shop_id', 'created_at'], unique=False)

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index('ix_referrals_shop_id_created_at', ['shop_id', 'created_at'], unique=False)

    with op.batch_alter_table('reminder_messages', schema=None) as batch_op:
        batch_op.create_index('ix_reminder_messages_shop_id_id', ['shop_id', 'id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('reminder_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_reminder_messages_shop_id_id')

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_shop_id_created_at')

    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_redemptions_shop_id_created_at')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_shop_id_paid_at')

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_shop_id_created_at')

    
