"""customer balances kept by the database and list sort indexes (the admin's customer list at a million customers); kept analytics reports

Revision ID: 0028
Revises: 0027

`customer_balances` holds each customer's available and pending points: the sums of
`point_lots.remaining` by state. Triggers keep it, in the statement that changes a lot, so every
way the application writes lots (the ORM, the bulk writer's Core INSERTs and executemany UPDATEs,
a guest merged into an account) is covered without the application knowing:
- a new customer gets a row (0, 0);
- a lot inserted adds its remaining points to its state's bucket; a lot deleted takes them away;
- a lot whose remaining points, state or customer change moves the difference.
Only the states `available` and `pending` are counted (spent, expired, reversed lots hold nothing
that can be spent). The customer row is already locked by whoever changes its lots
(`app.loyalty.ledger.lock_customer`), so the balance row is changed under the same lock.

`analytics_reports` keeps the analytics page's newest report per shop and period
(`app.loyalty.analytics`), computed by the worker.

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
(It adds a table, triggers and indexes; the previous release writes lots and customers as before
and the triggers follow. The rows of existing customers are filled in one statement after the
triggers exist, inside the migration's transaction.)
"""
from alembic import op
import app.models
import sqlalchemy as sa


revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None

# The points a lot row contributes to each bucket.
_AVAILABLE = "(CASE WHEN {row}.state = 'available' THEN {row}.remaining ELSE 0 END)"
_PENDING = "(CASE WHEN {row}.state = 'pending' THEN {row}.remaining ELSE 0 END)"


def _add(row: str, sign: str) -> str:
    """SQL: add (sign '+') or take away (sign '-') what lot `row` (NEW or OLD) contributes."""
    return (f"UPDATE customer_balances SET available = available {sign} {_AVAILABLE.format(row=row)}, "
            f"pending = pending {sign} {_PENDING.format(row=row)} WHERE customer_id = {row}.customer_id")


_POSTGRES = f"""
CREATE FUNCTION customer_balances_new_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_balances (customer_id, shop_id, available, pending) VALUES (NEW.id, NEW.shop_id, 0, 0);
    RETURN NULL;
END $$;
CREATE TRIGGER customer_balances_new_customer AFTER INSERT ON customers
    FOR EACH ROW EXECUTE FUNCTION customer_balances_new_customer();

CREATE FUNCTION customer_balances_follow_lot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.customer_id = NEW.customer_id THEN
        -- one row version for the net change
        UPDATE customer_balances
           SET available = available - {_AVAILABLE.format(row="OLD")} + {_AVAILABLE.format(row="NEW")},
               pending = pending - {_PENDING.format(row="OLD")} + {_PENDING.format(row="NEW")}
         WHERE customer_id = NEW.customer_id;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_add("OLD", "-")};
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        {_add("NEW", "+")};
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customer_balances_lot_insert_delete AFTER INSERT OR DELETE ON point_lots
    FOR EACH ROW EXECUTE FUNCTION customer_balances_follow_lot();
CREATE TRIGGER customer_balances_lot_update AFTER UPDATE OF remaining, state, customer_id ON point_lots
    FOR EACH ROW WHEN (OLD.remaining IS DISTINCT FROM NEW.remaining OR OLD.state IS DISTINCT FROM NEW.state
                       OR OLD.customer_id IS DISTINCT FROM NEW.customer_id)
    EXECUTE FUNCTION customer_balances_follow_lot();
"""

_SQLITE = [
    """CREATE TRIGGER customer_balances_new_customer AFTER INSERT ON customers BEGIN
        INSERT INTO customer_balances (customer_id, shop_id, available, pending) VALUES (NEW.id, NEW.shop_id, 0, 0);
    END""",
    f"""CREATE TRIGGER customer_balances_lot_insert AFTER INSERT ON point_lots BEGIN {_add("NEW", "+")}; END""",
    f"""CREATE TRIGGER customer_balances_lot_delete AFTER DELETE ON point_lots BEGIN {_add("OLD", "-")}; END""",
    f"""CREATE TRIGGER customer_balances_lot_update AFTER UPDATE OF remaining, state, customer_id ON point_lots
        WHEN OLD.remaining IS NOT NEW.remaining OR OLD.state IS NOT NEW.state OR OLD.customer_id IS NOT NEW.customer_id
    BEGIN {_add("OLD", "-")}; {_add("NEW", "+")}; END""",
]

_FILL = f"""
INSERT INTO customer_balances (customer_id, shop_id, available, pending)
SELECT c.id, c.shop_id, COALESCE(l.available, 0), COALESCE(l.pending, 0)
  FROM customers c
  LEFT JOIN (SELECT customer_id, SUM({_AVAILABLE.format(row="point_lots")}) AS available,
                    SUM({_PENDING.format(row="point_lots")}) AS pending
               FROM point_lots GROUP BY customer_id) l ON l.customer_id = c.id
"""


def upgrade() -> None:
    op.create_table(
        'analytics_reports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('computed_at', app.models.UTCDateTime(), nullable=False),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('report', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_analytics_reports_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_reports')),
        sa.UniqueConstraint('shop_id', 'period', name=op.f('uq_analytics_reports_shop_id_period')),
    )
    op.create_table(
        'customer_balances',
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('available', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('pending', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_customer_balances_customer_id_customers'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customer_balances_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_balances')),
    )
    if op.get_bind().dialect.name == "postgresql":
        # No lot or customer may change between the fill and the triggers taking over.
        op.execute(sa.text("LOCK TABLE customers, point_lots IN SHARE ROW EXCLUSIVE MODE"))
        op.execute(sa.text(_POSTGRES))
    else:
        for statement in _SQLITE:
            op.execute(sa.text(statement))
    op.execute(sa.text(_FILL))
    op.create_index('ix_customer_balances_shop_id_available_customer_id', 'customer_balances',
                    ['shop_id', 'available', 'customer_id'], unique=False)
    op.create_index('ix_customers_shop_id_last_name_id', 'customers', ['shop_id', 'last_name', 'id'], unique=False)
    op.create_index('ix_customers_shop_id_last_order_at_id', 'customers', ['shop_id', 'last_order_at', 'id'],
                    unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Statistics for the planner now, not when autovacuum gets round to the filled table.
        op.execute(sa.text("ANALYZE customer_balances"))


def downgrade() -> None:
    op.drop_index('ix_customers_shop_id_last_order_at_id', table_name='customers')
    op.drop_index('ix_customers_shop_id_last_name_id', table_name='customers')
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("DROP TRIGGER customer_balances_lot_update ON point_lots"))
        op.execute(sa.text("DROP TRIGGER customer_balances_lot_insert_delete ON point_lots"))
        op.execute(sa.text("DROP TRIGGER customer_balances_new_customer ON customers"))
        op.execute(sa.text("DROP FUNCTION customer_balances_follow_lot()"))
        op.execute(sa.text("DROP FUNCTION customer_balances_new_customer()"))
    else:
        for name in ("lot_update", "lot_delete", "lot_insert", "new_customer"):
            op.execute(sa.text(f"DROP TRIGGER customer_balances_{name}"))
    op.drop_index('ix_customer_balances_shop_id_available_customer_id', table_name='customer_balances')
    op.drop_table('customer_balances')
    op.drop_table('analytics_reports')
