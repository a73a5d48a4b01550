"""install and sync: Shopify token expiries, granted scopes, re-authorisation flag; oauth states; platform webhooks

Revision ID: 0014
Revises: 0013

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('shops') as batch:
        batch.add_column(sa.Column('access_token_expires_at', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('refresh_token_expires_at', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('granted_scopes', sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column('needs_reauth_at', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('token_refresh_claimed_until', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('installed_at', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('credentials_checked_at', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('credentials_error', sa.Text(), nullable=True))
        batch.add_column(sa.Column('last_reconciled_at', app.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('reconciled_recovered', sa.Integer(), server_default='0', nullable=False))
    op.create_table('oauth_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(), nullable=False),
    sa.Column('used_at', app.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_states')),
    sa.UniqueConstraint('nonce', name='uq_oauth_states_nonce')
    )
    op.create_table('platform_webhooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('platform_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('checked_at', app.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', app.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_platform_webhooks_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_platform_webhooks')),
    sa.UniqueConstraint('shop_id', 'topic', name='uq_platform_webhooks_shop_id_topic')
    )


def downgrade() -> None:
    op.drop_table('platform_webhooks')
    op.drop_table('oauth_states')
    with op.batch_alter_table('shops') as batch:
        batch.drop_column('reconciled_recovered')
        batch.drop_column('last_reconciled_at')
        batch.drop_column('credentials_error')
        batch.drop_column('credentials_checked_at')
        batch.drop_column('installed_at')
        batch.drop_column('token_refresh_claimed_until')
        batch.drop_column('needs_reauth_at')
        batch.drop_column('granted_scopes')
        batch.drop_column('refresh_token_expires_at')
        batch.drop_column('access_token_expires_at')
