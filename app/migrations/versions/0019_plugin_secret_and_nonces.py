"""plugin secret and nonces: the per-shop secret our WordPress plugin signs its calls with, and the nonces seen

Revision ID: 0019
Revises: 0018

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds a nullable column and a table, which the previous release ignores.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('shops') as batch_op:
        batch_op.add_column(sa.Column('plugin_secret_enc', sa.LargeBinary(), nullable=True))
    op.create_table('plugin_nonces',
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('seen_at', app.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_plugin_nonces_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('shop_id', 'nonce', name=op.f('pk_plugin_nonces'))
    )
    op.create_index('ix_plugin_nonces_seen_at', 'plugin_nonces', ['seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_plugin_nonces_seen_at', table_name='plugin_nonces')
    op.drop_table('plugin_nonces')
    with op.batch_alter_table('shops') as batch_op:
        batch_op.drop_column('plugin_secret_enc')
