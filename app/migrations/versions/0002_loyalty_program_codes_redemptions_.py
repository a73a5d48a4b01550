"""loyalty program: codes, redemptions, referrals, tiers, order tasks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:06:42.430568

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('issued_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('source_key', sa.String(length=128), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'created', 'failed', name='code_status', native_enum=False, length=20), nullable=False),
    sa.Column('platform_id', sa.String(length=255), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_issued_codes_customer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_issued_codes_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issued_codes')),
    sa.UniqueConstraint('shop_id', 'code', name=op.f('uq_issued_codes_shop_id_code')),
    sa.UniqueConstraint('shop_id', 'purpose', 'source_key', name=op.f('uq_issued_codes_shop_id_purpose_source_key'))
    )
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issued_codes_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_issued_codes_status_created_at', ['status', 'created_at'], unique=False)

    op.create_table('tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('from_tier', sa.String(length=64), nullable=True),
    sa.Column('to_tier', sa.String(length=64), nullable=True),
    sa.Column('metric_value', app.models.Money(precision=18, scale=4), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('program_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_tier_changes_customer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_tier_changes_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tier_changes_customer_id'), ['customer_id'], unique=False)

    op.create_table('order_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'created', 'failed', name='task_status', native_enum=False, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_tasks_order_id_orders')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_tasks_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_tasks')),
    sa.UniqueConstraint('order_id', 'kind', 'key', name=op.f('uq_order_tasks_order_id_kind_key'))
    )
    op.create_table('redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('reward_name', sa.String(length=80), nullable=False),
    sa.Column('reward', sa.JSON(), nullable=False),
    sa.Column('program_version', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('status', sa.Enum('pending', 'created', 'failed', name='redemption_status', native_enum=False, length=20), nullable=False),
    sa.Column('issued_code_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_redemptions_customer_id_customers')),
    sa.ForeignKeyConstraint(['issued_code_id'], ['issued_codes.id'], name=op.f('fk_redemptions_issued_code_id_issued_codes')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_redemptions_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemptions')),
    sa.UniqueConstraint('shop_id', 'idempotency_key', name=op.f('uq_redemptions_shop_id_idempotency_key'))
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_redemptions_customer_id'), ['customer_id'], unique=False)

    op.create_table('referrals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('referrer_id', sa.Integer(), nullable=False),
    sa.Column('referred_customer_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('pending', 'rewarded', 'rejected', name='referral_status', native_enum=False, length=20), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('qualifies_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_referrals_order_id_orders')),
    sa.ForeignKeyConstraint(['referred_customer_id'], ['customers.id'], name=op.f('fk_referrals_referred_customer_id_customers')),
    sa.ForeignKeyConstraint(['referrer_id'], ['customers.id'], name=op.f('fk_referrals_referrer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_referrals_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referrals')),
    sa.UniqueConstraint('shop_id', 'referred_customer_id', name=op.f('uq_referrals_shop_id_referred_customer_id'))
    )
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index('ix_referrals_referrer_id_created_at', ['referrer_id', 'created_at'], unique=False)
        batch_op.create_index('ix_referrals_status_qualifies_at', ['status', 'qualifies_at'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birthday', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('tier', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('tier_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('tier_period_ends_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('referral_code', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_customers_tier_period_ends_at'), ['tier_period_ends_at'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_tier_period_ends_at'))
        batch_op.drop_column('referral_code')
        batch_op.drop_column('tier_period_ends_at')
        batch_op.drop_column('tier_since')
        batch_op.drop_column('tier')
        batch_op.drop_column('birthday')

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_status_qualifies_at')
        batch_op.drop_index('ix_referrals_referrer_id_created_at')

    op.drop_table('referrals')
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemptions_customer_id'))

    op.drop_table('redemptions')
    op.drop_table('order_tasks')
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tier_changes_customer_id'))

    op.drop_table('tier_changes')
    with op.batch_alter_table('issued_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_issued_codes_status_created_at')
        batch_op.drop_index(batch_op.f('ix_issued_codes_customer_id'))

    op.drop_table('issued_codes')
    
