"""staff sessions known to the server: signing out deletes the row, so a copied cookie stops working

Revision ID: 0015
Revises: 0014

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It only adds a table; staff signed in under the previous release sign in once more.)
"""
from alembic import op
import sqlalchemy as sa
import app.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_sign_ins',
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_sign_ins_staff_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_digest', name=op.f('pk_staff_sign_ins'))
    )
    op.create_index('ix_staff_sign_ins_staff_id', 'staff_sign_ins', ['staff_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_staff_sign_ins_staff_id', table_name='staff_sign_ins')
    op.drop_table('staff_sign_ins')
