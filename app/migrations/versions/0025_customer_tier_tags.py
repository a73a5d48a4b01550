"""customer tier tags: the member's tier as the shop shows it (Shopify tag, WooCommerce meta), and what is waiting

Revision ID: 0025
Revises: 0024

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It only adds a table, which the previous release does not know.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_tier_tags',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'written', 'failed', 'skipped', name='tier_tag_status',
                                native_enum=False, length=20), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('written', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('marked_at', app.models.UTCDateTime(), nullable=False),
    sa.Column('written_at', app.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_tier_tags_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customer_tier_tags_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_tier_tags'))
    )
    op.create_index('ix_customer_tier_tags_shop_id_status', 'customer_tier_tags', ['shop_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_customer_tier_tags_shop_id_status', table_name='customer_tier_tags')
    op.drop_table('customer_tier_tags')
