"""where a delivery came from (webhook, reconcile, backfill), refund detail, and backfills

Revision ID: 0016
Revises: 0015

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds a column with a server default — the previous release's webhook INSERT, which does not
name it, writes 'webhook' — a nullable column and a table.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('webhook_deliveries',
                  sa.Column('source', sa.String(length=16), server_default='webhook', nullable=False))
    op.add_column('order_refunds', sa.Column('detailed_at', app.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table('backfills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('since', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('award_from', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('until', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('orders_read', sa.Integer(), nullable=False),
    sa.Column('orders_new', sa.Integer(), nullable=False),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('orders_total', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_backfills_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backfills')),
    sa.UniqueConstraint('shop_id', name='uq_backfills_shop_id')
    )


def downgrade() -> None:
    op.drop_table('backfills')
    with op.batch_alter_table('order_refunds') as batch:
        batch.drop_column('detailed_at')
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('source')
