"""inbox: the shop foreign key is enforced on every database again; the trigger of 0009 goes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 04:00:00

Why: migration 0009 made `webhook_deliveries.shop_id REFERENCES shops ON DELETE CASCADE`
NOT ENFORCED on PostgreSQL 18+ only, with a row trigger on `shops` to delete a shop's
deliveries, so the inbox behaved one way on PostgreSQL 18+ and another on SQLite and older
PostgreSQL. Measured again (bench/RESULTS.md, ingest): the enforced key costs 21–36 µs of
PostgreSQL CPU per webhook (~3 % of the rate at saturation), and ours stays above 0.9 of the
durable-ack floor with it (1.08). Every
database now enforces the key, and a shop's erasure deletes its deliveries by the cascade, like
every other table of the shop. A delivery for a shop erased after the receiver read it is
refused by the key on every database (the receiver answers 401, unknown shop).

SQLite and PostgreSQL before 18 already enforce the key: nothing changes there.

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. That release's shop erasure deletes the shop row and relies on the trigger or the
cascade for the deliveries: the cascade, enforced again in the same transaction that drops the
trigger, does it. Its receiver gets a refused INSERT for a shop erased after it read it (as it
did on SQLite) and answers 500, so the platform retries until the shop is unknown (401); its
worker's branch for a delivery without a shop is no longer reached.
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

FK = "fk_webhook_deliveries_shop_id_shops"


def _postgresql_18() -> bool:
    """PostgreSQL 18+, where 0009 made the key NOT ENFORCED and added the trigger."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return int(bind.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 180000


def upgrade() -> None:
    if not _postgresql_18():
        return
    # Enforcing the key checks every row: deliveries of shops erased meanwhile go first (the
    # worker would have deleted them; they hold that shop's customers' data).
    op.execute("DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM shops s WHERE s.id = d.shop_id)")
    op.execute(f"ALTER TABLE webhook_deliveries ALTER CONSTRAINT {FK} ENFORCED")
    op.execute("DROP TRIGGER shops_delete_deliveries ON shops")
    op.execute("DROP FUNCTION delete_deliveries_of_deleted_shop()")


def downgrade() -> None:
    if not _postgresql_18():
        return
    # Back to 0009's state: the key in the catalog but not checked, the trigger doing the cascade.
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
