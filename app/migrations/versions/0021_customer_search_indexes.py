"""customer search indexes: trigram GIN on e-mail and names (PostgreSQL), order numbers, list filters

Revision ID: 0021
Revises: 0020

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds indexes only. On PostgreSQL it needs the pg_trgm extension, which ships with PostgreSQL
and is trusted, so the database owner may create it; on SQLite the same indexes are plain B-trees.)
"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

_TRIGRAM = ("email", "first_name", "last_name")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    for column in _TRIGRAM:
        if postgres:
            op.create_index(f'ix_customers_{column}_search', 'customers', [column], unique=False,
                            postgresql_using='gin', postgresql_ops={column: 'gin_trgm_ops'})
        else:
            op.create_index(f'ix_customers_{column}_search', 'customers', [column], unique=False)
    op.create_index('ix_customers_shop_id_tier_email', 'customers', ['shop_id', 'tier', 'email'], unique=False)
    op.create_index('ix_customers_shop_id_referral_code', 'customers', ['shop_id', 'referral_code'], unique=False)
    op.create_index('ix_customers_banned_shop_id_email', 'customers', ['shop_id', 'email'], unique=False,
                    sqlite_where=sa.text('banned_at IS NOT NULL'), postgresql_where=sa.text('banned_at IS NOT NULL'))
    op.create_index('ix_orders_shop_id_number', 'orders', ['shop_id', 'number'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_orders_shop_id_number', table_name='orders')
    op.drop_index('ix_customers_banned_shop_id_email', table_name='customers')
    op.drop_index('ix_customers_shop_id_referral_code', table_name='customers')
    op.drop_index('ix_customers_shop_id_tier_email', table_name='customers')
    for column in reversed(_TRIGRAM):
        op.drop_index(f'ix_customers_{column}_search', table_name='customers')
    # pg_trgm stays: other objects of the database may use it.
