"""reminders: messages, consent proof, cart sequences, win-back schedule

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:13:48.470988

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('consent_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_consent_events_customer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_consent_events_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_events'))
    )
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_events_customer_id'), ['customer_id'], unique=False)

    op.create_table('reminder_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('campaign', sa.String(length=32), nullable=False),
    sa.Column('subject_key', sa.String(length=128), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('marketing', sa.Boolean(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('checkout_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('scheduled', 'sending', 'sent', 'suppressed', 'failed', name='message_status', native_enum=False, length=20), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('code_id', sa.Integer(), nullable=True),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('attributed_order_id', sa.Integer(), nullable=True),
    sa.Column('attributed_revenue', app.models.Money(precision=18, scale=4), nullable=True),
    sa.Column('attributed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['attributed_order_id'], ['orders.id'], name=op.f('fk_reminder_messages_attributed_order_id_orders')),
    sa.ForeignKeyConstraint(['checkout_id'], ['checkouts.id'], name=op.f('fk_reminder_messages_checkout_id_checkouts')),
    sa.ForeignKeyConstraint(['code_id'], ['issued_codes.id'], name=op.f('fk_reminder_messages_code_id_issued_codes')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_reminder_messages_customer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_reminder_messages_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminder_messages')),
    sa.UniqueConstraint('shop_id', 'campaign', 'subject_key', 'step', name=op.f('uq_reminder_messages_shop_id_campaign_subject_key_step'))
    )
    with op.batch_alter_table('reminder_messages', schema=None) as batch_op:
        batch_op.create_index('ix_reminder_messages_customer_id_sent_at', ['customer_id', 'sent_at'], unique=False)
        batch_op.create_index('ix_reminder_messages_status_due_at', ['status', 'due_at'], unique=False)

    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_fingerprint', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('sequence', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('sequence_started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_step', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('next_reminder_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_checkouts_next_reminder_at'), ['next_reminder_at'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_order_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_winback_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_customers_next_winback_at'), ['next_winback_at'], unique=False)

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_reason_created_at', ['reason', 'created_at'], unique=False)

    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.create_index('ix_point_lots_expires_at', ['expires_at'], unique=False)

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('brand_color', sa.String(length=7), nullable=True))
        batch_op.add_column(sa.Column('mail_from', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('address', sa.Text(), nullable=True))

    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.create_index('ix_tier_changes_created_at', ['created_at'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_tier_changes_created_at')

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_column('address')
        batch_op.drop_column('mail_from')
        batch_op.drop_column('brand_color')

    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_point_lots_expires_at')

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_reason_created_at')

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_next_winback_at'))
        batch_op.drop_column('next_winback_at')
        batch_op.drop_column('last_order_at')
        batch_op.drop_column('unsubscribed_at')

    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkouts_next_reminder_at'))
        batch_op.drop_column('next_reminder_at')
        batch_op.drop_column('next_step')
        batch_op.drop_column('sequence_started_at')
        batch_op.drop_column('sequence')
        batch_op.drop_column('content_fingerprint')

    with op.batch_alter_table('reminder_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_reminder_messages_status_due_at')
        batch_op.drop_index('ix_reminder_messages_customer_id_sent_at')

    op.drop_table('reminder_messages')
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_events_customer_id'))

    op.drop_table('consent_events')
    
