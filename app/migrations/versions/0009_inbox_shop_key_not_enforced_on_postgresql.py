"""inbox: the shop foreign key is not enforced on PostgreSQL 18+; a trigger deletes a shop's deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 04:40:00

Why: the check behind `webhook_deliveries.shop_id REFERENCES shops` runs on every webhook INSERT
and locks the shop's row (FOR KEY SHARE); with two writers that is a new MultiXact on the same
row per delivery. Measured under load: 30–47 µs of server CPU per delivery, the largest part of
what the inbox INSERT costs beyond the benchmark's floor (bench/RESULTS.md). The receiver only
inserts a shop id it has just read and verified a signature with, so the check buys little
there. The constraint stays in the catalog (NOT ENFORCED, PostgreSQL 18+), and so does what it
did on delete: a row trigger on `shops` deletes the shop's deliveries, as ON DELETE CASCADE did.
A delivery that still names a deleted shop (its request read the shop from the receiver's short
cache just before the erasure) is deleted by the worker (`jobs.deliveries.process_delivery`).

SQLite keeps the enforced constraint: there the check is an in-process index lookup.
PostgreSQL before 18 cannot un-enforce a foreign key and keeps it as it was.

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. That release relies on the cascade when it erases a shop; the trigger keeps it.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

FK = "fk_webhook_deliveries_shop_id_shops"


def _applies() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return int(bind.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 180000


def upgrade() -> None:
    if not _applies():
        return
    op.execute("""
        CREATE FUNCTION delete_deliveries_of_deleted_shop() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM webhook_deliveries WHERE shop_id = OLD.id;
            RETURN NULL;
        END
        $$
    """)
    op.execute("""
        CREATE TRIGGER shops_delete_deliveries AFTER DELETE ON shops
        FOR EACH ROW EXECUTE FUNCTION delete_deliveries_of_deleted_shop()
    """)
    op.execute(f"ALTER TABLE webhook_deliveries ALTER CONSTRAINT {FK} NOT ENFORCED")


def downgrade() -> None:
    if not _applies():
        return
    # Enforcing the key again checks every row: deliveries of deleted shops go first.
    op.execute("DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM shops s WHERE s.id = d.shop_id)")
    op.execute(f"ALTER TABLE webhook_deliveries ALTER CONSTRAINT {FK} ENFORCED")
    op.execute("DROP TRIGGER shops_delete_deliveries ON shops")
    op.execute("DROP FUNCTION delete_deliveries_of_deleted_shop()")
