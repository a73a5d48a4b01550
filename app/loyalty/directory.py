"""Finding customers in the admin, fast at a million customers (no Flask): search and the customer list.

- `search_customers`: every word of the query must appear in the e-mail, the first or the last
  name (any part, any case); or the whole query is an order number ("#1001", "1001", or the
  platform's order id), a code the program made (reward, referral, tier, reminder code) or the
  customer's referral code (as typed or in capitals).
  On PostgreSQL the words are served by trigram GIN indexes (pg_trgm, migration 0021), which
  answer `LIKE '%part%'` without reading the table; the order and code look-ups by B-tree indexes.
- `list_customers`: one shop's customers in e-mail order (or newest / oldest first), filtered by
  tier, banned, having points, having a failed code; one page at a time by keyset (the position
  after the last row), so every page costs the same however deep.
Both return each customer's balance (one grouped read for the page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, union
from sqlalchemy.orm import Session

from app.models import CodeStatus, Customer, IssuedCode, LotState, Order, PointLot, Shop

SORTS = ("email", "newest", "oldest")


@dataclass(frozen=True)
class Found:
    """A customer on a result page, with their shop and points."""

    customer: Customer
    shop: Shop
    available: int
    pending: int


def balances(session: Session, customer_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Return (available, pending) points per customer id (one grouped read; absent ids have none)."""
    if not customer_ids:
        return {}
    rows = session.execute(
        select(
            PointLot.customer_id,
            func.sum(case((PointLot.state == LotState.AVAILABLE, PointLot.remaining), else_=0)),
            func.sum(case((PointLot.state == LotState.PENDING, PointLot.remaining), else_=0)),
        )
        .where(PointLot.customer_id.in_(customer_ids), PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]))
        .group_by(PointLot.customer_id)
    ).all()
    return {customer_id: (int(available), int(pending)) for customer_id, available, pending in rows}


def _found(session: Session, rows: list[tuple[Customer, Shop]]) -> list[Found]:
    points = balances(session, [customer.id for customer, _ in rows])
    return [Found(customer, shop, *points.get(customer.id, (0, 0))) for customer, shop in rows]


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
        select(Customer, Shop)
        .join(Shop, Shop.id == Customer.shop_id)
        .where(Customer.id.in_(select(ids.c.id)), live)
        .order_by(Customer.email, Customer.id)
        .limit(limit)
    ).all()
    return _found(session, [(customer, shop) for customer, shop in rows])


@dataclass(frozen=True)
class Page:
    """One page of the customer list, and the cursor of the next (None on the last page)."""

    rows: list[Found]
    next_after: str | None


def _cursor(customer: Customer, sort: str) -> str:
    if sort == "email":
        return f"{customer.id}:{customer.email or ''}"
    return f"{customer.id}:{customer.created_at.isoformat()}"


def _after(sort: str, after: str) -> Any:
    """SQL: rows after the cursor `after` ("<id>:<email>" or "<id>:<created_at>") in `sort` order.

    Raises:
        ValueError: a cursor this list did not make.
    """
    raw_id, _, key = after.partition(":")
    if not raw_id.isdigit():
        raise ValueError("not a cursor of this list")
    last_id = int(raw_id)
    if sort == "email":
        if key == "":  # in the rows without an e-mail, which come last
            return and_(Customer.email.is_(None), Customer.id > last_id)
        return or_(Customer.email > key, and_(Customer.email == key, Customer.id > last_id), Customer.email.is_(None))
    moment = datetime.fromisoformat(key)
    if sort == "newest":
        return or_(Customer.created_at < moment, and_(Customer.created_at == moment, Customer.id < last_id))
    return or_(Customer.created_at > moment, and_(Customer.created_at == moment, Customer.id > last_id))


def list_customers(session: Session, shop_id: int, *, limit: int = 100, sort: str = "email",
                   tier: str | None = None, banned: bool = False, has_points: bool = False,
                   failed_codes: bool = False, after: str | None = None) -> Page:
    """Return one page of a shop's live customers in `sort` order ("email", "newest", "oldest").

    Filters: `tier` (a tier name), `banned`, `has_points` (pending or available points),
    `failed_codes` (a code the shop refused). `after` is the previous page's `next_after`.

    Raises:
        ValueError: an unknown sort or a cursor this list did not make.
    """
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
    conditions: list[Any] = [Customer.shop_id == shop_id, Customer.merged_into_id.is_(None)]
    if tier is not None:
        conditions.append(Customer.tier == tier)
    if banned:
        conditions.append(Customer.banned_at.is_not(None))
    if has_points:
        conditions.append(select(PointLot.id).where(
            PointLot.customer_id == Customer.id, PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]),
            PointLot.remaining > 0).exists())
    if failed_codes:
        conditions.append(Customer.id.in_(select(IssuedCode.customer_id).where(
            IssuedCode.shop_id == shop_id, IssuedCode.status == CodeStatus.FAILED)))
    if after:
        conditions.append(_after(sort, after))
    order = {
        "email": (Customer.email.asc().nulls_last(), Customer.id.asc()),
        "newest": (Customer.created_at.desc(), Customer.id.desc()),
        "oldest": (Customer.created_at.asc(), Customer.id.asc()),
    }[sort]
    rows = session.execute(
        select(Customer, Shop).join(Shop, Shop.id == Customer.shop_id).where(*conditions).order_by(*order).limit(limit + 1)
    ).all()
    more, rows = len(rows) > limit, rows[:limit]
    page = _found(session, [(customer, shop) for customer, shop in rows])
    return Page(page, _cursor(rows[-1][0], sort) if more and rows else None)
