"""earning by product: order lines, refund lines and looked-up product facts

Revision ID: 0026
Revises: 0025

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds two nullable columns and a table, which the previous release ignores.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch_op:
        batch_op.add_column(sa.Column('lines', sa.JSON(), nullable=True))
    with op.batch_alter_table('order_refunds') as batch_op:
        batch_op.add_column(sa.Column('lines', sa.JSON(), nullable=True))
    op.create_table('product_facts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.String(length=64), nullable=False),
    sa.Column('found', sa.Boolean(), nullable=False),
    sa.Column('collections', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('fetched_at', app.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_product_facts_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_facts')),
    sa.UniqueConstraint('shop_id', 'product_id', name=op.f('uq_product_facts_shop_id_product_id'))
    )


def downgrade() -> None:
    op.drop_table('product_facts')
    with op.batch_alter_table('order_refunds') as batch_op:
        batch_op.drop_column('lines')
    with op.batch_alter_table('orders') as batch_op:
        batch_op.drop_column('lines')
