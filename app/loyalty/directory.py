"""Finding customers in the admin, fast at a million customers (no Flask): search and the customer list.

- `search_customers`: every word of the query must appear in the e-mail, the first or the last
  name (any part, any case); or the whole query is an order number ("#1001", "1001", or the
  platform's order id), a code the program made (reward, referral, tier, reminder code) or the
  customer's referral code (as typed or in capitals).
  On PostgreSQL the words are served by trigram GIN indexes (pg_trgm, migration 0021), which
  answer `LIKE '%part%'` without reading the table; the order and code look-ups by B-tree indexes.
- `list_customers`: one shop's customers sorted by e-mail, last name, available points, last
  order or sign-up, either way, filtered by tier, banned, having points, having a failed code;
  one page at a time by keyset (the position after the last row or before the first), so every
  page costs the same however deep.
Both return each customer's balance from `customer_balances` (kept by the database from the lots,
migration 0028) and the number of their codes the shop refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, or_, select, tuple_, union
from sqlalchemy.orm import Session

from app.models import CodeStatus, Customer, CustomerBalance, IssuedCode, Order, Shop


@dataclass(frozen=True)
class Found:
    """A customer on a result page, with their shop and points."""

    customer: Customer
    shop: Shop
    available: int
    pending: int
    failed_codes: int = 0


def _escape(word: str) -> str:
    return word.replace("/", "//").replace("%", "/%").replace("_", "/_")


def search_customers(session: Session, query: str, limit: int, *,
                     shop_ids: frozenset[int] | None = None) -> list[Found]:
    """Return up to `limit` live customers (merged guest records left out) that `query` names,
    in the shops `shop_ids` (None: every shop), ordered by e-mail. When more match, `limit` of
    them are returned (not necessarily the first by e-mail): the caller asks for one more than it
    shows and says the search should be narrowed."""
    text = query.strip()
    if not text:
        return []
    if shop_ids is None:
        shop_ids = frozenset(session.scalars(select(Shop.id)).all())
    if not shop_ids:
        return []
    in_shops = Customer.shop_id.in_(shop_ids)
    live = Customer.merged_into_id.is_(None)
    words = text.lower().split()
    matches = [
        or_(Customer.email.like(f"%{_escape(w)}%", escape="/"),
            Customer.first_name.ilike(f"%{_escape(w)}%", escape="/"),
            Customer.last_name.ilike(f"%{_escape(w)}%", escape="/"))
        for w in words
    ]
    # Up to `limit` word matches, in no particular order: with ORDER BY e-mail the planner walks the
    # e-mail index and, for a rare word, reads every customer; without it the trigram indexes answer.
    by_words = select(Customer.id.label("id")).where(in_shops, live, *matches).limit(limit).subquery()
    bare = text.lstrip("#").strip()
    by_order = select(Order.customer_id.label("id")).where(
        Order.shop_id.in_(shop_ids), Order.customer_id.is_not(None),
        or_(Order.number.in_({text, bare, f"#{bare}"}), Order.platform_id == bare))
    by_code = select(IssuedCode.customer_id.label("id")).where(
        IssuedCode.shop_id.in_(shop_ids), IssuedCode.customer_id.is_not(None),
        IssuedCode.code.in_({text, text.upper()}))
    by_referral = select(Customer.id.label("id")).where(in_shops, Customer.referral_code.in_({text, text.upper()}))
    ids = union(select(by_words.c.id), by_order, by_code, by_referral).subquery()
    rows = session.execute(
        select(Customer, Shop, CustomerBalance.available, CustomerBalance.pending)
        .join(Shop, Shop.id == Customer.shop_id)
        .join(CustomerBalance, CustomerBalance.customer_id == Customer.id)
        .where(Customer.id.in_(select(ids.c.id)), live)
        .order_by(Customer.email, Customer.id)
        .limit(limit)
    ).all()
    return _with_failed_codes(session, [Found(c, s, int(a), int(p)) for c, s, a, p in rows])


@dataclass(frozen=True)
class Page:
    """One page of the customer list, with the cursors of the next and previous pages (None at an end)."""

    rows: list[Found]
    next_after: str | None
    previous_before: str | None


@dataclass(frozen=True)
class _Sort:
    """A sort of the list: its column and whether the column can be empty (NULL)."""

    column: Any
    nullable: bool
    parse: Any  # the cursor's text back to a column value
    id: Any  # the customer id as the column's index holds it (ties are broken by it)
    of: Any  # a listed row's value of the column (for its cursor)


# Every sort is served by an index that starts (shop_id, column, id), so a page reads about as
# many index entries as it shows, on the first page and the ten-thousandth.
_SORTS = {
    "email": _Sort(Customer.email, True, str, Customer.id, lambda row: row.customer.email),
    "name": _Sort(Customer.last_name, True, str, Customer.id, lambda row: row.customer.last_name),
    "available": _Sort(CustomerBalance.available, False, int, CustomerBalance.customer_id, lambda row: row.available),
    "last_order": _Sort(Customer.last_order_at, True, datetime.fromisoformat, Customer.id,
                        lambda row: row.customer.last_order_at),
    "created": _Sort(Customer.created_at, False, datetime.fromisoformat, Customer.id,
                     lambda row: row.customer.created_at),
}
SORTS = tuple(_SORTS)


def _position(row: Found, sort: _Sort) -> str:
    """The cursor of `row`: "<part>:<id>:<value>", part 0 for rows with a value, 1 for those without."""
    value = sort.of(row)
    if value is None:
        return f"1:{row.customer.id}:"
    return f"0:{row.customer.id}:{value.isoformat() if isinstance(value, datetime) else value}"


def _parse(cursor: str, sort: _Sort) -> tuple[int, int, Any]:
    """Return (part, id, value) of a cursor this list made.

    Raises:
        ValueError: a cursor this list did not make.
    """
    part, _, rest = cursor.partition(":")
    raw_id, _, raw_value = rest.partition(":")
    if part not in ("0", "1") or not raw_id.isdigit() or (part == "1" and raw_value):
        raise ValueError("not a cursor of this list")
    try:
        value = sort.parse(raw_value) if part == "0" else None
    except ValueError:
        raise ValueError("not a cursor of this list") from None
    return int(part), int(raw_id), value


def list_customers(session: Session, shop_id: int, *, limit: int = 50, sort: str = "email",
                   descending: bool = False, tier: str | None = None, banned: bool | None = None,
                   has_points: bool | None = None, failed_codes: bool | None = None,
                   after: str | None = None, before: str | None = None) -> Page:
    """Return one page of a shop's live customers sorted by `sort` (one of SORTS) and `id`.

    Customers without a value for the sort (no e-mail, no name, no order yet) come after all others
    in either direction. Filters, None meaning "any": `tier` (a tier name; "" for none),
    `banned`, `has_points` (available points), `failed_codes` (a code the shop refused).
    `after` is a page's `next_after`, `before` its `previous_before` (keyset pages: each reads
    about as much as it shows, however deep).

    Raises:
        ValueError: an unknown sort or a cursor this list did not make.
    """
    if sort not in _SORTS:
        raise ValueError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
    order = _SORTS[sort]
    conditions: list[Any] = [Customer.shop_id == shop_id, Customer.merged_into_id.is_(None)]
    if tier is not None:
        conditions.append(Customer.tier == tier if tier else Customer.tier.is_(None))
    if banned is not None:
        conditions.append(Customer.banned_at.is_not(None) if banned else Customer.banned_at.is_(None))
    if has_points is not None:
        conditions.append(CustomerBalance.available > 0 if has_points else CustomerBalance.available == 0)
    if failed_codes is not None:
        failed = Customer.id.in_(select(IssuedCode.customer_id).where(
            IssuedCode.shop_id == shop_id, IssuedCode.status == CodeStatus.FAILED, IssuedCode.customer_id.is_not(None)))
        conditions.append(failed if failed_codes else ~failed)
    if order.column is CustomerBalance.available:
        conditions.append(CustomerBalance.shop_id == shop_id)  # the balance index leads with the shop
    cursor = _parse(after or before or "", order) if (after or before) else None
    backwards = before is not None and after is None
    # The list is two parts walked one after the other: rows with a value by (value, id), then
    # rows without one by id; walking backwards reverses both the parts and the order in each.
    parts = [1, 0] if backwards else [0, 1]
    if not order.nullable:
        parts = [0]
    rows: list[tuple[Customer, Shop, int, int]] = []
    for part in parts:
        if cursor is not None and (part < cursor[0] if not backwards else part > cursor[0]):
            continue
        up = descending == backwards  # the direction this part is read in
        query = (select(Customer, Shop, CustomerBalance.available, CustomerBalance.pending)
                 .join(Shop, Shop.id == Customer.shop_id)
                 .join(CustomerBalance, CustomerBalance.customer_id == Customer.id)
                 .where(*conditions))
        if part == 0:
            key = tuple_(order.column, order.id)
            if order.nullable:
                query = query.where(order.column.is_not(None))
            if cursor is not None and cursor[0] == 0:
                position = tuple_(literal(cursor[2]), literal(cursor[1]))
                query = query.where(key > position if up else key < position)
            query = query.order_by(*(c.asc() if up else c.desc() for c in (order.column, order.id)))
        else:
            query = query.where(order.column.is_(None))
            if cursor is not None and cursor[0] == 1:
                query = query.where(Customer.id > cursor[1] if up else Customer.id < cursor[1])
            query = query.order_by(Customer.id.asc() if up else Customer.id.desc())
        rows += session.execute(query.limit(limit + 1 - len(rows))).all()
        if len(rows) > limit:
            break
    more, rows = len(rows) > limit, rows[:limit]
    if backwards:
        rows.reverse()
    found = _with_failed_codes(session, [Found(c, s, int(a), int(p)) for c, s, a, p in rows])
    if not found:
        return Page(found, None, None)
    first, last = _position(found[0], order), _position(found[-1], order)
    if backwards:
        return Page(found, last if after or before else None, first if more else None)
    return Page(found, last if more else None, first if cursor is not None else None)


def _with_failed_codes(session: Session, rows: list[Found]) -> list[Found]:
    """Return `rows` with each customer's number of codes the shop refused (one grouped read)."""
    ids = [row.customer.id for row in rows]
    if not ids:
        return rows
    counts = dict(session.execute(
        select(IssuedCode.customer_id, func.count())
        .where(IssuedCode.customer_id.in_(ids), IssuedCode.status == CodeStatus.FAILED)
        .group_by(IssuedCode.customer_id)).all())
    return [replace(row, failed_codes=int(counts.get(row.customer.id, 0))) for row in rows]
