"""customer metafields: the loyalty values each Shopify customer's metafields hold, and what changed

Revision ID: 0018
Revises: 0017

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It only adds a table, which the previous release does not know.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_metafields',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('written', sa.JSON(), nullable=False),
    sa.Column('dirty_since', app.models.UTCDateTime(), nullable=True),
    sa.Column('written_at', app.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_metafields_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customer_metafields_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_metafields'))
    )
    op.create_index('ix_customer_metafields_shop_id_dirty_since', 'customer_metafields', ['shop_id', 'dirty_since'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_customer_metafields_shop_id_dirty_since', table_name='customer_metafields')
    op.drop_table('customer_metafields')
