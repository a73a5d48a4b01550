"""Does the program pay? The figures of one shop's loyalty program, for the admin dashboard.

Pure queries (no Flask, no writes): every figure is one SQL aggregate, so the cost follows the
number of groups, not the number of customers, orders or messages.

A period is `since` (included) to `until` (left out), both timezone-aware; None leaves that side
open, so `program_metrics(s, shop)` is "all time". Each figure says which moment puts a row into
the period. Money is `Decimal` in the shop's currency; rates are `Decimal` between 0 and 1 (four
places, rounded half up) or None when there is nothing to divide by.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, distinct, func, select
from sqlalchemy.orm import Session

from app.models import (
    LedgerEntry,
    MessageStatus,
    Order,
    Redemption,
    RedemptionStatus,
    Referral,
    ReferralStatus,
    ReminderMessage,
    Shop,
)
from app.messaging.reminders import MARKETING

# Ledger reasons that award points, and those that take awarded points back or give them again
# (refunds, cancellations, restored orders, awards moved by gift-card payments). Staff adjustments
# are neither: they are goodwill.
EARN_REASONS: tuple[str, ...] = ("earn", "signup_bonus", "first_order_bonus", "birthday_bonus", "referral")
REVERSAL_REASONS: tuple[str, ...] = ("refund", "cancel", "restore", "gift_card")
CAMPAIGNS: tuple[str, ...] = tuple(MARKETING)

_RATE_PLACES = Decimal("0.0001")
_MONEY_UNITS = 10_000  # Money columns keep four decimal places


def program_metrics(
    session: Session, shop_id: int, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Return the program's figures for one shop in a period (definitions below).

    Members and repeat purchases (by the order's payment time):
        paid order            an order the platform reported paid that is not a test order and was
                              not cancelled or deleted (partly refunded orders still count).
        members               customers with at least one paid order in the period.
        repeat_members        members with two or more paid orders in the period.
        repeat_purchase_rate  repeat_members / members. Both counts use only the period's orders;
                              over all time this is the classic repeat purchase rate.

    Points (by the time the ledger recorded them):
        points_earned         points awarded for orders, sign-up, first-order and birthday bonuses
                              and referral rewards, net of points taken back for refunds and
                              cancellations (and given back for restored orders). Staff
                              adjustments are not counted.
        points_expired        points that expired unused.
        points_redeemed       points spent on rewards redeemed in the period (by redemption time);
                              redemptions whose code the shop refused are left out, because their
                              points were given back.
        redemption_rate       points_redeemed / points_earned. It can exceed 1 in a short period
                              when members spend points they earned before it.
        members_redeemed      members (as above) who redeemed at least one reward in the period.
        member_redemption_rate  members_redeemed / members.

    Rewards (by redemption time), in `rewards`:
        redeemed              rewards redeemed (code created or still being created).
        codes_created         of those, codes that exist in the shop.
        codes_pending         of those, codes still being created.
        code_failures         redemptions whose code the shop refused (points given back).

    Referrals (by the time the friend's first order was recorded), in `referrals`: how many are
    `pending` (waiting for the return window), `rewarded`, and `rejected`, with the rejections by
    reason in `rejected_by_reason` (self_referral, refunded, not_new_customer, monthly_cap, banned).

    Reminders, per campaign in `campaigns` (every known campaign, zeros included):
        sent                  e-mails handed to the mail server, by sending time.
        suppressed            messages not sent on purpose, by the time they were due, with the
                              reasons in `suppressed_by_reason` (e.g. no_consent, unsubscribed,
                              ordered). Deferrals (frequency cap, quiet hours) are not
                              suppressions: those messages go out later.
        failed                messages given up after retries, by the time they were last due.
        orders                paid orders credited to the campaign (the order used the message's
                              code, or came within the attribution window after it), by the
                              order's payment time.
        revenue               the order totals of those orders (revenue won back), in `currency`.
        marketing             True for campaigns that need marketing consent.
    `orders_won_back` and `revenue_won_back` add up all campaigns.

    Raises:
        ValueError: there is no shop with this id.
    """
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise ValueError(f"no shop with id {shop_id}")

    paid = _paid_orders_per_member(shop_id, since, until)
    members, repeat_members = session.execute(
        select(func.count(), func.coalesce(func.sum(case((paid.c.orders >= 2, 1), else_=0)), 0)).select_from(paid)
    ).one()
    members, repeat_members = int(members), int(repeat_members)

    by_reason = dict(
        session.execute(
            select(LedgerEntry.reason, func.coalesce(func.sum(LedgerEntry.delta), 0))
            .where(LedgerEntry.shop_id == shop_id,
                   LedgerEntry.reason.in_(EARN_REASONS + REVERSAL_REASONS + ("expired",)),
                   *_within(LedgerEntry.created_at, since, until))
            .group_by(LedgerEntry.reason)
        ).all()
    )
    points_earned = sum(int(by_reason.get(r, 0)) for r in EARN_REASONS + REVERSAL_REASONS)
    points_expired = -int(by_reason.get("expired", 0))

    redemption_where = (Redemption.shop_id == shop_id, *_within(Redemption.created_at, since, until))
    by_status = {
        RedemptionStatus(status): (int(n), int(points))
        for status, n, points in session.execute(
            select(Redemption.status, func.count(), func.coalesce(func.sum(Redemption.points), 0))
            .where(*redemption_where)
            .group_by(Redemption.status)
        ).all()
    }
    created = by_status.get(RedemptionStatus.CREATED, (0, 0))
    pending = by_status.get(RedemptionStatus.PENDING, (0, 0))
    failed = by_status.get(RedemptionStatus.FAILED, (0, 0))
    points_redeemed = created[1] + pending[1]
    members_redeemed = int(
        session.scalar(
            select(func.count(distinct(Redemption.customer_id))).where(
                *redemption_where,
                Redemption.status != RedemptionStatus.FAILED,
                Redemption.customer_id.in_(select(paid.c.customer_id)),
            )
        )
        or 0
    )

    return {
        "shop_id": shop_id,
        "currency": shop.currency,
        "since": since,
        "until": until,
        "members": members,
        "repeat_members": repeat_members,
        "repeat_purchase_rate": _rate(repeat_members, members),
        "points_earned": points_earned,
        "points_expired": points_expired,
        "points_redeemed": points_redeemed,
        "redemption_rate": _rate(points_redeemed, points_earned),
        "members_redeemed": members_redeemed,
        "member_redemption_rate": _rate(members_redeemed, members),
        "rewards": {
            "redeemed": created[0] + pending[0],
            "codes_created": created[0],
            "codes_pending": pending[0],
            "code_failures": failed[0],
        },
        "referrals": _referrals(session, shop_id, since, until),
        **_campaigns(session, shop_id, since, until),
    }


def _within(column: Any, since: datetime | None, until: datetime | None) -> tuple[Any, ...]:
    """SQL conditions: `column` lies in [since, until); an open side adds no condition."""
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return tuple(conditions)


def _paid_orders_per_member(shop_id: int, since: datetime | None, until: datetime | None) -> Any:
    """Subquery (customer_id, orders): paid orders per customer in the period."""
    return (
        select(Order.customer_id.label("customer_id"), func.count().label("orders"))
        .where(
            Order.shop_id == shop_id,
            Order.customer_id.is_not(None),
            Order.is_paid.is_(True),
            Order.test.is_(False),
            Order.cancelled_at.is_(None),
            Order.deleted_at.is_(None),
            *_within(Order.paid_at, since, until),
        )
        .group_by(Order.customer_id)
        .subquery()
    )


def _rate(numerator: int, denominator: int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(_RATE_PLACES, rounding=ROUND_HALF_UP)


def _money_sum(session: Session, column: Any) -> Any:
    """SQL: the exact sum of a Money column.

    PostgreSQL sums NUMERIC exactly. SQLite stores money as text and SUM() would add floats, so
    there each amount is summed as a whole number of 1/10000 units (exact for any NUMERIC(18, 4)).
    """
    if session.get_bind().dialect.name == "sqlite":
        return func.sum(cast(func.round(cast(column, Float) * _MONEY_UNITS), Integer))
    return func.sum(column)


def _money(session: Session, value: Any) -> Decimal:
    if value is None:
        return Decimal("0.00")
    amount = Decimal(value) / _MONEY_UNITS if session.get_bind().dialect.name == "sqlite" else Decimal(value)
    cents = amount.quantize(Decimal("0.01"))
    return cents if cents == amount else amount


def _referrals(session: Session, shop_id: int, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    result: dict[str, Any] = {status.value: 0 for status in ReferralStatus}
    rejected: dict[str, int] = {}
    for status, reason, n in session.execute(
        select(Referral.status, Referral.reason, func.count())
        .where(Referral.shop_id == shop_id, *_within(Referral.created_at, since, until))
        .group_by(Referral.status, Referral.reason)
    ).all():
        status = ReferralStatus(status)
        result[status.value] += int(n)
        if status == ReferralStatus.REJECTED:
            key = reason or "unknown"
            rejected[key] = rejected.get(key, 0) + int(n)
    result["rejected_by_reason"] = dict(sorted(rejected.items()))
    return result


def _campaigns(session: Session, shop_id: int, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    campaigns: dict[str, dict[str, Any]] = {}

    def row(campaign: str) -> dict[str, Any]:
        if campaign not in campaigns:
            campaigns[campaign] = {
                "sent": 0, "suppressed": 0, "suppressed_by_reason": {}, "failed": 0, "orders": 0,
                "revenue": Decimal("0.00"), "marketing": MARKETING.get(campaign, True),
            }
        return campaigns[campaign]

    for campaign in CAMPAIGNS:
        row(campaign)
    shop_messages = ReminderMessage.shop_id == shop_id
    for campaign, n in session.execute(
        select(ReminderMessage.campaign, func.count())
        .where(shop_messages, ReminderMessage.status == MessageStatus.SENT,
               *_within(ReminderMessage.sent_at, since, until))
        .group_by(ReminderMessage.campaign)
    ).all():
        row(campaign)["sent"] = int(n)
    for campaign, status, reason, n in session.execute(
        select(ReminderMessage.campaign, ReminderMessage.status, ReminderMessage.reason, func.count())
        .where(shop_messages, ReminderMessage.status.in_([MessageStatus.SUPPRESSED, MessageStatus.FAILED]),
               *_within(ReminderMessage.due_at, since, until))
        .group_by(ReminderMessage.campaign, ReminderMessage.status, ReminderMessage.reason)
    ).all():
        figures = row(campaign)
        if MessageStatus(status) == MessageStatus.FAILED:
            figures["failed"] += int(n)
        else:
            figures["suppressed"] += int(n)
            key = reason or "unknown"
            figures["suppressed_by_reason"][key] = figures["suppressed_by_reason"].get(key, 0) + int(n)
    for campaign, n, revenue in session.execute(
        select(ReminderMessage.campaign, func.count(), _money_sum(session, ReminderMessage.attributed_revenue))
        .join(Order, and_(Order.id == ReminderMessage.attributed_order_id, Order.shop_id == shop_id))
        .where(shop_messages, *_within(Order.paid_at, since, until))
        .group_by(ReminderMessage.campaign)
    ).all():
        figures = row(campaign)
        figures["orders"], figures["revenue"] = int(n), _money(session, revenue)
    for figures in campaigns.values():
        figures["suppressed_by_reason"] = dict(sorted(figures["suppressed_by_reason"].items()))
    return {
        "campaigns": campaigns,
        "orders_won_back": sum(f["orders"] for f in campaigns.values()),
        "revenue_won_back": sum((f["revenue"] for f in campaigns.values()), Decimal("0.00")),
    }
