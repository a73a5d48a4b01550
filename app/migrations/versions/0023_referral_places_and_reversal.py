"""referral places and reversal: referrals.place (unique per referrer), referrals.reversed_at

Revision ID: 0023
Revises: 0022

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.

Two nullable columns and a unique index over (referrer_id, place); place is NULL on every
existing row (NULLs do not collide), so the previous release, which never writes it, is unaffected.
"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("place", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_referrals_referrer_id_place", "referrals", ["referrer_id", "place"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_referrals_referrer_id_place", table_name="referrals")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("reversed_at")
        batch.drop_column("place")
