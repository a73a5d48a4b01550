"""inbox: on PostgreSQL a delivery's compressed body stays in its row (toast_tuple_target 4080)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 07:40:00

Why: PostgreSQL compresses a row's large values once the row passes `toast_tuple_target` (by
default ~2 KB) and, if the row is still over it, moves the largest value to the table's TOAST
relation. A typical delivery compresses to just over 2 KB with its headers, so its body went to
the TOAST relation: every webhook INSERT was two heap inserts and four index inserts (the TOAST
relation has its own index), and the worker's read of the body went through that index again.
With the target at 4080 bytes (half a page), the compressed body stays in the row: one heap
insert and three index inserts per delivery. Measured under load (bench/RESULTS.md, eighth
pass): 19–47 µs less PostgreSQL CPU per delivery and ~150 bytes less WAL. A body that does
not fit in 4080 bytes compressed still goes to the TOAST relation, as before. The rows are
larger (~2.7 KB instead of ~0.5 KB plus ~1.7 KB in the TOAST relation for a 4 KB body) until the
retention sweep empties them.

It changes where new rows keep their body, nothing that any release reads or writes: the
previous release runs unchanged on it. Rows already stored stay where they are.

SQLite has no such setting and stores rows as they come.
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE webhook_deliveries SET (toast_tuple_target = 4080)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE webhook_deliveries RESET (toast_tuple_target)")
