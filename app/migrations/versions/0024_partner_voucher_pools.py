"""partner voucher pools: voucher_pools and their voucher_codes (issue 20, rule 3)

Revision ID: 0024
Revises: 0023

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds two tables only; the previous release never reads them.)
"""
from alembic import op
import sqlalchemy as sa

from app.models import UTCDateTime


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'voucher_pools',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('partner', sa.String(length=120), nullable=True),
        sa.Column('created_by', sa.String(length=320), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name='fk_voucher_pools_shop_id_shops', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_voucher_pools'),
        sa.UniqueConstraint('shop_id', 'name', name='uq_voucher_pools_shop_id_name'),
    )
    op.create_table(
        'voucher_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('pool_id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=True),
        sa.Column('redemption_id', sa.Integer(), nullable=True),
        sa.Column('claimed_at', UTCDateTime(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name='fk_voucher_codes_shop_id_shops', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['pool_id'], ['voucher_pools.id'], name='fk_voucher_codes_pool_id_voucher_pools',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['redemption_id'], ['redemptions.id'],
                                name='fk_voucher_codes_redemption_id_redemptions'),
        sa.PrimaryKeyConstraint('id', name='pk_voucher_codes'),
        sa.UniqueConstraint('shop_id', 'code', name='uq_voucher_codes_shop_id_code'),
        sa.UniqueConstraint('redemption_id', name='uq_voucher_codes_redemption_id'),
    )
    op.create_index('ix_voucher_codes_pool_id_redemption_id_id', 'voucher_codes',
                    ['pool_id', 'redemption_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_voucher_codes_pool_id_redemption_id_id', table_name='voucher_codes')
    op.drop_table('voucher_codes')
    op.drop_table('voucher_pools')
