"""Write: the first paid orders of new customers, for a group of deliveries at once (no Flask here).

Most deliveries a shop sends are the paid order of a customer we have not seen yet. For those the
per-delivery path (`orders.apply_order`) costs about sixteen statements each; here a group's share
costs about a dozen statements in all:

1. one SELECT of the group's orders and one of its customers that are stored already (any found
   goes to the per-delivery path, which merges, reverses and re-reads as it must);
2. INSERT of the customers (profile and consent, `ON CONFLICT DO NOTHING RETURNING id`), then of
   the orders (the same): a row another transaction wrote meanwhile does not come back, and its
   delivery goes to the per-delivery path, which finds that row;
3. the plans, decided by the same pure functions the per-delivery path calls —
   `decide.plan_order` (the award), `points.first_order_steps` (bonus, second-purchase code,
   referral code, gifts, tier and perk codes), `customers.profile_update` (profile and consent),
   `orders.snapshot_fields`/`paid_fields`, `reminders.winback_fields`, `orders.completed_checkouts`;
4. INSERTs of lots (returning their ids), entries, codes, tier changes, consent events and gift
   tasks, one UPDATE (executemany) of the customers and one of the completed checkouts.

Every INSERT is stock SQLAlchemy Core with a list of rows (`insertmanyvalues`: one statement per
batch of rows, with RETURNING where ids are needed). Returned ids are matched to rows by their
natural key (a customer's platform id, an order's platform id), which both databases return in
one statement (`sort_by_parameter_order` would send SQLite one INSERT per row). Customers are
inserted in the order of their platform ids, so two transactions that meet on the same new
customers wait for each other instead of deadlocking.

What this writer does not model goes to the per-delivery path, in the same transaction: guests
(found by e-mail), orders not paid, cancelled or with refunds, a code that may be a member's
referral code, a shop with automatic redemption (it reads balances), a program with product rules
that read looked-up product facts (collections, categories, tags), and any customer or order
already stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from app.db import after_commit, dialect_insert
from app.loyalty import checkouts, codes, customers, decide, incentives, ledger, orders, points, products, tier_tags
from app.messaging import reminders
from app.models import (
    ConsentEvent,
    Customer,
    IssuedCode,
    LedgerEntry,
    Order,
    OrderTask,
    PointLot,
    Shop,
    TierChange,
    utcnow,
)
from app.program import Program
from connectors import types as ct

logger = logging.getLogger(__name__)

_CUSTOMERS = Customer.__table__
_ORDERS = Order.__table__
_LOTS = PointLot.__table__

# The columns of a new customer and a new order: every row of one INSERT names them all.
_CUSTOMER_COLUMNS = ("shop_id", "platform_id", "email", "first_name", "last_name", "locale", "birthday",
                     "accepts_marketing", "consent_source", "consent_at", "unsubscribed_at", "platform_updated_at",
                     "created_at", "updated_at")
_AFTER_PAYMENT_COLUMNS = ("referral_code", "tier", "tier_since", "tier_period_ends_at", "last_order_at",
                          "next_winback_at")


@dataclass(frozen=True)
class NewOrder:
    """An order snapshot a delivery carries, to be written here if it qualifies."""

    delivery_id: int
    order: ct.Order


@dataclass(frozen=True)
class _NewCustomer:
    """The columns of a customer inserted here that the rules read (they read a `Customer` row in
    the per-delivery path)."""

    id: int
    shop_id: int
    platform_id: str
    email: str | None
    locale: str | None
    banned_at: datetime | None = None
    tier: str | None = None
    referral_code: str | None = None


def qualifies(order: ct.Order, program: Program) -> bool:
    """Return True when the snapshot is one this writer models: a paid order of a customer
    account that counts (not cancelled or refunded, no refunds), without a code that may be a
    member's referral code, in a program without automatic redemption. Pure."""
    customer = order.customer
    if customer is None or customer.id is None:
        return False  # a guest is found by e-mail and may join an account: per delivery
    if not order.is_paid or order.merchandise is None or order.refunds or order.cancelled_at is not None:
        return False
    if order.status.value in decide.GONE_STATUSES:
        return False
    prefix = codes.PREFIXES["referral"] + "-"
    if any(code and code.strip().upper().startswith(prefix) for code in order.discount_codes):
        return False
    # Product rules that read looked-up collections, categories or tags: per delivery, which
    # reads the product facts (`points.with_product_facts`); rules by product, variant or vendor
    # read only the order's own lines, here as there.
    if any(rule.needs_lookup for rule in program.earning.product_rules):
        return False
    return not program.redemption.auto


def write_new_orders(session: Session, shop: Shop, version: int, program: Program,
                     candidates: list[NewOrder]) -> tuple[list[int], list[int]]:
    """Write the candidates that are new customers' first paid orders; return the ids of the
    deliveries written and of those left for the per-delivery path (in the same transaction).

    The caller guarantees that no other delivery of its group names a candidate's order,
    customer, e-mail or checkout (their order relative to each other would matter).

    Raises:
        sqlalchemy.exc.IntegrityError: a natural key of a planned row existed (the caller
            rolls the group back and processes its deliveries one by one).
    """
    left = [c.delivery_id for c in candidates if not qualifies(c.order, program)]
    todo = [c for c in candidates if qualifies(c.order, program)]
    if not todo:
        return [], left
    now = utcnow()
    stored_orders, stored_customers, guest_emails = _stored(session, shop, todo)
    fresh: list[NewOrder] = []
    seen: set[str] = set()
    for c in sorted(todo, key=lambda c: (c.order.customer.id, c.order.id)):  # type: ignore[union-attr]
        customer = c.order.customer
        assert customer is not None and customer.id is not None
        email = customer.email or c.order.email
        if (c.order.id in stored_orders or customer.id in stored_customers or customer.id in seen
                or (email is not None and email in guest_emails)):
            left.append(c.delivery_id)
        else:
            fresh.append(c)
            seen.add(customer.id)
    if not fresh:
        return [], left

    rules = program.reminders.consent
    customer_rows, consents = [], []
    for c in fresh:
        profile = c.order.customer
        assert profile is not None
        changes = customers.profile_update(shop, customers.UNKNOWN, profile, rules, now)
        assert changes is not None  # a customer we do not hold takes any profile
        fields, consent = changes
        row = dict.fromkeys(_CUSTOMER_COLUMNS)
        row.update(shop_id=shop.id, platform_id=profile.id, email=profile.email or c.order.email, created_at=now,
                   updated_at=now)
        row.update(fields)
        customer_rows.append(row)
        consents.append(consent)
    insert_customers = (dialect_insert(session, _CUSTOMERS)
                        .on_conflict_do_nothing(index_elements=["shop_id", "platform_id"])
                        .returning(_CUSTOMERS.c.id, _CUSTOMERS.c.platform_id))
    customer_ids = {platform_id: id_ for id_, platform_id in session.execute(insert_customers, customer_rows)}

    order_rows, placed, consent_rows = [], [], []
    for c, row, consent in zip(fresh, customer_rows, consents):
        customer_id = customer_ids.get(row["platform_id"])
        if customer_id is None:  # written meanwhile by another transaction
            left.append(c.delivery_id)
            continue
        if consent is not None:  # the proof goes with the customer, whatever becomes of the order
            consent_rows.append(consent.event_values(shop.id, customer_id))
        order_rows.append({
            "gift_card_paid": None, **orders.snapshot_fields(c.order), **orders.paid_fields(c.order),
            "shop_id": shop.id, "platform_id": c.order.id, "customer_id": customer_id, "cancelled_at": None,
            "deleted_at": None, "created_at": now, "updated_at": now,
        })
        placed.append((c, row, consent, customer_id))
    insert_orders = (dialect_insert(session, _ORDERS)
                     .on_conflict_do_nothing(index_elements=["shop_id", "platform_id"])
                     .returning(_ORDERS.c.id, _ORDERS.c.platform_id))
    order_ids = ({platform_id: id_ for id_, platform_id in session.execute(insert_orders, order_rows)}
                 if order_rows else {})

    written: list[int] = []
    plans: list[tuple[int, int, int, decide.OrderPlan, points.FirstOrderSteps | None]] = []
    customer_updates: list[dict[str, Any]] = []
    completed: list[tuple[str, datetime]] = []
    for (c, row, consent, customer_id), values in zip(placed, order_rows):
        order_id = order_ids.get(c.order.id)
        if order_id is None:  # written meanwhile: the per-delivery path finds it (and our customer)
            left.append(c.delivery_id)
            continue
        written.append(c.delivery_id)
        facts = decide.OrderFacts(
            id=order_id, number=values["number"], currency=values["currency"], is_paid=True,
            paid_at=values["paid_at"], merchandise=values["merchandise"], merchandise_tax=values["merchandise_tax"],
            taxes_included=bool(values["taxes_included"]), gift_card_paid=values["gift_card_paid"],
            tags=tuple(values["tags"]), status=values["status"], cancelled_at=None, deleted_at=None,
            total_weight_grams=values["total_weight_grams"] or 0,
            lines=products.order_lines(values["lines"]), timezone=shop.timezone,
        )
        plan = decide.plan_order(facts, decide.CustomerFacts(customer_id, None, False), (), (), program, version, now)
        if plan.skipped:
            logger.info("order earns nothing", extra={"shop": shop.id, "order_id": order_id, "why": plan.skipped})
        fields = dict.fromkeys(_AFTER_PAYMENT_COLUMNS)
        steps = None
        if plan.award is not None:
            who = _NewCustomer(id=customer_id, shop_id=shop.id, platform_id=row["platform_id"], email=row["email"],
                               locale=row["locale"])
            steps = points.first_order_steps(shop, who, facts, program, version, plan.award, now)
            fields.update(steps.customer_fields)
        fields.update(reminders.winback_fields([values["paid_at"]], program.reminders.winback))
        customer_updates.append({"b_id": customer_id, **fields})
        plans.append((c.delivery_id, customer_id, order_id, plan, steps))
        completed.extend((checkout_id, values["paid_at"])
                         for checkout_id in orders.completed_checkouts(shop, c.order.id, c.order.checkout_token))
    if plans:
        _write_plans(session, shop, plans, {customer_id: row["platform_id"] for _, row, _, customer_id in placed}, now)
    if consent_rows:
        session.execute(ConsentEvent.__table__.insert(), consent_rows)
    if customer_updates:
        session.execute(update(_CUSTOMERS).where(_CUSTOMERS.c.id == bindparam("b_id")), customer_updates)
    checkouts.complete_many(session, shop, completed)
    return written, left


_STORED_ORDERS = select(_ORDERS.c.platform_id).where(
    _ORDERS.c.shop_id == bindparam("shop_id"), _ORDERS.c.platform_id.in_(bindparam("order_ids", expanding=True)))
_STORED_CUSTOMERS = select(_CUSTOMERS.c.platform_id, _CUSTOMERS.c.email).where(
    _CUSTOMERS.c.shop_id == bindparam("shop_id"),
    or_(
        _CUSTOMERS.c.platform_id.in_(bindparam("customer_ids", expanding=True)),
        and_(_CUSTOMERS.c.email.in_(bindparam("emails", expanding=True)), _CUSTOMERS.c.platform_id.is_(None),
             _CUSTOMERS.c.merged_into_id.is_(None)),
    ),
)


def _stored(session: Session, shop: Shop, todo: list[NewOrder]) -> tuple[set[str], set[str], set[str]]:
    """Return which candidates' orders and customer accounts are stored, and the e-mails of
    stored guests among theirs (two SELECTs)."""
    order_ids = [c.order.id for c in todo]
    customer_ids = [c.order.customer.id for c in todo if c.order.customer is not None]
    emails = sorted({e for c in todo for e in (c.order.email, c.order.customer and c.order.customer.email) if e})
    stored_orders = set(session.scalars(_STORED_ORDERS, {"shop_id": shop.id, "order_ids": order_ids}))
    stored_customers: set[str] = set()
    guest_emails: set[str] = set()
    for platform_id, email in session.execute(
            _STORED_CUSTOMERS, {"shop_id": shop.id, "customer_ids": customer_ids, "emails": emails}):
        if platform_id is None:
            guest_emails.add(email)
        else:
            stored_customers.add(platform_id)
    return stored_orders, stored_customers, guest_emails


def _write_plans(session: Session, shop: Shop,
                 plans: list[tuple[int, int, int, decide.OrderPlan, points.FirstOrderSteps | None]],
                 platform_ids: dict[int, str], now: datetime) -> None:
    """Write the awards and the steps that follow them: lots (returning ids, matched by order),
    entries, codes, tier changes (with the mark that the shop must show the tier) and gift tasks,
    one INSERT each. `platform_ids`: each customer's platform id, by customer id."""
    award_lots = [ledger.lot_values(plan.new_lot, shop_id=shop.id, customer_id=customer_id, order_id=order_id,
                                    now=now)
                  for _, customer_id, order_id, plan, _ in plans if plan.new_lot is not None]
    bonus_lots = [ledger.lot_values(steps.bonus.lot, shop_id=shop.id, customer_id=customer_id, order_id=order_id,
                                    now=now)
                  for _, customer_id, order_id, _, steps in plans if steps is not None and steps.bonus is not None]
    award_lot_ids = _insert_lots(session, award_lots)
    bonus_lot_ids = _insert_lots(session, bonus_lots)
    entries, code_rows, tier_rows, tag_rows, tasks = [], [], [], [], []
    for delivery_id, customer_id, order_id, plan, steps in plans:
        entries.extend(ledger.entry_values(e, shop_id=shop.id, customer_id=customer_id, order_id=order_id,
                                           delivery_id=delivery_id, lot_id=award_lot_ids.get(order_id), now=now)
                       for e in plan.entries)
        if steps is None:
            continue
        if steps.bonus is not None:
            entries.append(ledger.entry_values(steps.bonus.entry, shop_id=shop.id, customer_id=customer_id,
                                               order_id=order_id, delivery_id=None,
                                               lot_id=bonus_lot_ids[order_id], now=now))
        code_rows.extend(codes.code_row(shop, now=now, **spec) for spec in steps.codes)
        tasks.extend(steps.gifts)
        if steps.tier_change is not None:
            tier_rows.append(steps.tier_change)
            tag_rows.append(tier_tags.row_values(shop.id, customer_id, platform_ids[customer_id], now))
            logger.info("tier changed", extra={"shop": shop.id, "customer": customer_id, "reason": "upgrade"})
    # Natural keys (the ledger's, the codes') of rows planned for customers and orders inserted
    # above cannot exist; if one did, the IntegrityError rolls the group back (see the caller).
    if entries:
        session.execute(LedgerEntry.__table__.insert(), entries)
    if code_rows:
        session.execute(IssuedCode.__table__.insert(), code_rows)
    if tier_rows:
        session.execute(TierChange.__table__.insert(), tier_rows)
        tier_tags.mark(session, tag_rows)  # the shop shows the tier (`jobs.tier_tags` writes it)
    if tasks:
        table = OrderTask.__table__
        stmt = (dialect_insert(session, table).on_conflict_do_nothing(index_elements=["order_id", "kind", "key"])
                .returning(table.c.id))
        for task_id in session.scalars(stmt, tasks).all():
            after_commit(session, lambda task_id=task_id: incentives.enqueue_order_task(task_id))


def _insert_lots(session: Session, rows: list[dict[str, Any]]) -> dict[int, int]:
    """Insert lots (at most one per order in `rows`); return their ids by order id."""
    if not rows:
        return {}
    stmt = _LOTS.insert().returning(_LOTS.c.id, _LOTS.c.order_id)
    return {order_id: id_ for id_, order_id in session.execute(stmt, rows)}
