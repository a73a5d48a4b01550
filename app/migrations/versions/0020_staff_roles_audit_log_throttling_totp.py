"""staff roles per shop, the audit log, sign-in throttling, TOTP and language per staff user

Revision ID: 0020
Revises: 0019

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds columns with defaults and new tables. Staff accounts that exist already saw every shop,
so they become administrators, which keeps what they see; new accounts see only the shops they
are given.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staff_users') as batch_op:
        batch_op.add_column(sa.Column('is_admin', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('totp_secret_enc', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
    op.execute(sa.text("UPDATE staff_users SET is_admin = true"))
    op.create_table('staff_shop_roles',
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('owner', 'support', name='staff_role', native_enum=False, length=20), nullable=False),
    sa.Column('adjust_limit', sa.Integer(), server_default='0', nullable=False),
    sa.Column('granted_by', sa.String(length=320), nullable=True),
    sa.Column('created_at', app.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_staff_shop_roles_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_shop_roles_staff_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('staff_id', 'shop_id', name=op.f('pk_staff_shop_roles'))
    )
    op.create_index('ix_staff_shop_roles_shop_id', 'staff_shop_roles', ['shop_id'], unique=False)
    op.create_table('staff_audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=True),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('staff_email', sa.String(length=320), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('created_at', app.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_staff_audit_log_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_audit_log_staff_id_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_audit_log'))
    )
    op.create_index('ix_staff_audit_log_shop_id_id', 'staff_audit_log', ['shop_id', 'id'], unique=False)
    op.create_table('staff_login_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('key_digest', sa.String(length=64), nullable=False),
    sa.Column('failed_at', app.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_login_failures'))
    )
    op.create_index('ix_staff_login_failures_scope_key_digest_failed_at', 'staff_login_failures',
                    ['scope', 'key_digest', 'failed_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_staff_login_failures_scope_key_digest_failed_at', table_name='staff_login_failures')
    op.drop_table('staff_login_failures')
    op.drop_index('ix_staff_audit_log_shop_id_id', table_name='staff_audit_log')
    op.drop_table('staff_audit_log')
    op.drop_index('ix_staff_shop_roles_shop_id', table_name='staff_shop_roles')
    op.drop_table('staff_shop_roles')
    with op.batch_alter_table('staff_users') as batch_op:
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_secret_enc')
        batch_op.drop_column('language')
        batch_op.drop_column('is_admin')
