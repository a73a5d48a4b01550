"""Earning by product: the facts its rules read of an order's lines (no Flask here).

An order line carries its product and variant ids (and, on Shopify, its vendor), which is all a
rule by product, variant or vendor needs. A product's collections (Shopify) or categories
(WooCommerce) and its tags are not in the order webhook: the worker looks them up from the
platform's API *before* it decides the order (`jobs.deliveries.prefetch_products`), only for paid
orders not yet awarded in a shop whose program has a rule that reads them, and keeps them in
`product_facts` for `MAX_AGE`. Deciding stays pure: `order_lines` hands `decide` the lines with
the facts found, and the product ids whose facts are missing or too old, so an award never
silently ignores a rule (`decide.ProductFactsMissingError`: the delivery is tried again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.loyalty.earning import LineAmounts
from app.models import ProductFacts
from app.program import Program
from connectors import types as ct

# How long looked-up facts are used: a product added to a collection, or tagged, earns by it
# from the next lookup after this (there is no products/update subscription).
MAX_AGE = timedelta(hours=1)

_FACTS = ProductFacts.__table__
_READ = select(_FACTS.c.product_id, _FACTS.c.collections, _FACTS.c.tags, _FACTS.c.fetched_at).where(
    _FACTS.c.shop_id == bindparam("shop_id"), _FACTS.c.product_id.in_(bindparam("ids", expanding=True)))


def needs_lookup(program: Program) -> bool:
    """Return True when a product rule of the program reads collections, categories or tags."""
    return any(rule.needs_lookup for rule in program.earning.product_rules)


def line_product_ids(lines: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Return the distinct product ids of stored order lines (`Order.lines`), in order."""
    return list(dict.fromkeys(str(line["product_id"]) for line in lines or () if line.get("product_id")))


def order_product_ids(order: ct.Order) -> list[str]:
    """Return the distinct product ids of a parsed order's merchandise lines."""
    return list(dict.fromkeys(line.product_id for line in order.line_items
                              if line.product_id and line.merchandise is not None and not line.is_gift_card))


def fresh_facts(session: Session, shop_id: int, product_ids: Sequence[str], now: datetime, *,
                max_age: timedelta | None = MAX_AGE) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Return (collections or categories, tags) of each product whose facts are at most `max_age`
    old (None: any kept facts; the storefront's cart estimate, which never asks the platform)."""
    if not product_ids:
        return {}
    return {
        row.product_id: (tuple(row.collections or ()), tuple(row.tags or ()))
        for row in session.execute(_READ, {"shop_id": shop_id, "ids": list(product_ids)})
        if max_age is None or row.fetched_at >= now - max_age
    }


def store_facts(session: Session, shop_id: int, facts: Sequence[ct.ProductFacts], now: datetime) -> None:
    """Keep looked-up facts (one INSERT … ON CONFLICT DO UPDATE: a newer lookup replaces an older)."""
    if not facts:
        return
    stmt = dialect_insert(session, _FACTS)
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "product_id"],
        set_={"found": stmt.excluded.found, "collections": stmt.excluded.collections, "tags": stmt.excluded.tags,
              "fetched_at": stmt.excluded.fetched_at},
    )
    session.execute(stmt, [
        {"shop_id": shop_id, "product_id": f.id, "found": f.found, "collections": list(f.collections),
         "tags": list(f.tags), "fetched_at": now}
        for f in facts
    ])


def _folded(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip().casefold() for v in values if v and v.strip()))


def order_lines(lines: Iterable[Mapping[str, Any]] | None,
                facts: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None) -> tuple[LineAmounts, ...]:
    """Return stored order lines as `decide` reads them, with their products' `facts`
    (collections or categories, and tags; a rule's `collections` and `categories` both match
    them, whichever word the platform uses). Pure."""
    facts = facts or {}
    result = []
    for line in lines or ():
        groups, tags = facts.get(str(line.get("product_id")), ((), ()))
        result.append(LineAmounts(
            id=str(line["id"]), merchandise=Decimal(line["merchandise"]), tax=Decimal(line.get("tax") or "0"),
            product_id=line.get("product_id"), variant_id=line.get("variant_id"), vendor=line.get("vendor"),
            collections=_folded(groups), categories=_folded(groups), tags=_folded(tags),
        ))
    return tuple(result)
