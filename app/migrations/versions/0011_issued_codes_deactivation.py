"""issued codes: ends_early_at and deactivated_at (tier perks switched off in the shop)

Revision ID: 0011
Revises: 0010

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.

Two nullable columns and an index: the previous release never reads or writes them.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_codes") as batch:
        batch.add_column(sa.Column("ends_early_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_issued_codes_ends_early_at", "issued_codes", ["ends_early_at"])


def downgrade() -> None:
    op.drop_index("ix_issued_codes_ends_early_at", table_name="issued_codes")
    with op.batch_alter_table("issued_codes") as batch:
        batch.drop_column("deactivated_at")
        batch.drop_column("ends_early_at")
