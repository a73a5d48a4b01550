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

from sqlalchemy import Float, Integer, and_, case, cast, distinct, func, literal, or_, select, true
from sqlalchemy.orm import Session, aliased

from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    MessageStatus,
    Order,
    PointLot,
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
EARN_REASONS: tuple[str, ...] = ("earn", "signup_bonus", "first_order_bonus", "birthday_bonus", "referral",
                                  "referral_step")
REVERSAL_REASONS: tuple[str, ...] = ("refund", "cancel", "restore", "gift_card", "referral_reversed",
                                     "referral_step_reversed")
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


# --- Analytics: series over weeks and the KPIs of the analytics page ---------------------------

def week_starts(timezone_name: str, now: datetime, weeks: int) -> list[datetime]:
    """Return `weeks` + 1 boundaries (UTC): the Mondays 00:00 in the shop's time zone that start
    the last `weeks` weeks (the current one included), and the start of the next week."""
    from datetime import time, timedelta, timezone
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone_name)
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    days = [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks + 1)]
    return [datetime.combine(d, time(0), tzinfo=zone).astimezone(timezone.utc) for d in days]


def _bucket(column: Any, bounds: list[datetime]) -> Any:
    """SQL: the index of the week in `bounds` that `column` falls in (rows outside are filtered out)."""
    return case(*((column < bound, i) for i, bound in enumerate(bounds[1:])), else_=len(bounds) - 1)


def _by_bucket(session: Session, column: Any, value: Any, bounds: list[datetime], *where: Any) -> list[int]:
    """Return `value` summed per week of `bounds` for rows whose `column` lies in them."""
    rows = select(_bucket(column, bounds).label("week"), value.label("value")).where(
        *where, column >= bounds[0], column < bounds[-1]).subquery()
    sums = dict(session.execute(select(rows.c.week, func.sum(rows.c.value)).group_by(rows.c.week)).all())
    return [int(sums.get(i, 0) or 0) for i in range(len(bounds) - 1)]


def weekly_points(session: Session, shop_id: int, bounds: list[datetime]) -> list[dict[str, Any]]:
    """Return points earned, redeemed and expired per week (definitions as in `program_metrics`):
    earned net of refunds and cancellations, redeemed on rewards not refused by the shop, expired."""
    earned = _by_bucket(session, LedgerEntry.created_at, LedgerEntry.delta, bounds,
                        LedgerEntry.shop_id == shop_id, LedgerEntry.reason.in_(EARN_REASONS + REVERSAL_REASONS))
    expired = _by_bucket(session, LedgerEntry.created_at, -LedgerEntry.delta, bounds,
                         LedgerEntry.shop_id == shop_id, LedgerEntry.reason == "expired")
    redeemed = _by_bucket(session, Redemption.created_at, Redemption.points, bounds,
                          Redemption.shop_id == shop_id, Redemption.status != RedemptionStatus.FAILED)
    return [{"week": bounds[i], "earned": earned[i], "redeemed": redeemed[i], "expired": expired[i]}
            for i in range(len(bounds) - 1)]


def _counting_orders(shop_id: int) -> tuple[Any, ...]:
    """SQL conditions: the shop's paid orders that count (as `program_metrics` counts them)."""
    return (Order.shop_id == shop_id, Order.is_paid.is_(True), Order.test.is_(False),
            Order.cancelled_at.is_(None), Order.deleted_at.is_(None))


def member_series(session: Session, shop_id: int, bounds: list[datetime]) -> list[dict[str, Any]]:
    """Return, per week: `members` (customers the program knew by the week's end: accounts and
    guests with an e-mail, merged guest records left out), `buyers` (customers with a paid order
    in the week), `returning` (buyers who had paid for an earlier order) and
    `repeat_purchase_rate` (returning / buyers)."""
    live = (Customer.shop_id == shop_id, Customer.merged_into_id.is_(None))
    before = int(session.scalar(select(func.count()).select_from(Customer).where(*live, Customer.created_at < bounds[0])) or 0)
    joined = _by_bucket(session, Customer.created_at, literal(1), bounds, *live)
    in_weeks = (
        select(Order.customer_id.label("customer_id"), _bucket(Order.paid_at, bounds).label("week"))
        .where(*_counting_orders(shop_id), Order.customer_id.is_not(None),
               Order.paid_at >= bounds[0], Order.paid_at < bounds[-1])
        .subquery()
    )
    weeks = select(in_weeks.c.customer_id, in_weeks.c.week).distinct().subquery()
    earlier = aliased(Order)
    firsts = (
        select(weeks.c.customer_id, func.min(weeks.c.week).label("first_week"))
        .group_by(weeks.c.customer_id)
        .subquery()
    )
    had_before = (
        select(earlier.id).where(earlier.customer_id == firsts.c.customer_id, earlier.is_paid.is_(True),
                                 earlier.paid_at < bounds[0], earlier.test.is_(False),
                                 earlier.cancelled_at.is_(None), earlier.deleted_at.is_(None))
        .exists()
    )
    customer_firsts = select(firsts.c.customer_id, firsts.c.first_week,
                             case((had_before, 1), else_=0).label("before")).subquery()
    returning = case((or_(customer_firsts.c.before == 1, customer_firsts.c.first_week < weeks.c.week), 1), else_=0)
    counts = {
        int(week): (int(buyers), int(back or 0))
        for week, buyers, back in session.execute(
            select(weeks.c.week, func.count(), func.sum(returning))
            .join(customer_firsts, customer_firsts.c.customer_id == weeks.c.customer_id)
            .group_by(weeks.c.week)
        ).all()
    }
    series = []
    members = before
    for i in range(len(bounds) - 1):
        members += joined[i]
        buyers, back = counts.get(i, (0, 0))
        series.append({"week": bounds[i], "members": members, "buyers": buyers, "returning": back,
                       "repeat_purchase_rate": _rate(back, buyers)})
    return series


def tier_distribution(session: Session, shop_id: int, tier_names: list[str]) -> list[tuple[str | None, int]]:
    """Return how many live customers hold each tier, in the program's order, then tiers no
    longer in the program, then None (no tier)."""
    counts = dict(session.execute(
        select(Customer.tier, func.count())
        .where(Customer.shop_id == shop_id, Customer.merged_into_id.is_(None))
        .group_by(Customer.tier)
    ).all())
    ordered: list[tuple[str | None, int]] = [(name, int(counts.pop(name, 0))) for name in tier_names]
    none = int(counts.pop(None, 0))
    ordered += sorted(((name, int(n)) for name, n in counts.items()), key=lambda item: str(item[0]))
    ordered.append((None, none))
    return ordered


def _order_codes(session: Session) -> tuple[Any, Any]:
    """Return (table-valued function, code) listing the codes an order used (`orders.discount_codes`).

    The one statement that differs by database: SQLite `json_each`, PostgreSQL `json_array_elements_text`.
    """
    if session.get_bind().dialect.name == "sqlite":
        codes = func.json_each(Order.discount_codes).table_valued("value")
    else:
        codes = func.json_array_elements_text(Order.discount_codes).table_valued("value")
    return codes, func.upper(codes.c.value)


def _spend_groups(session: Session, shop: Shop, orders: Any, group: Any) -> dict[Any, dict[str, Any]]:
    """Return per value of `group`: orders, customers, revenue (order totals in the shop's
    currency), average order value, orders per customer and revenue per customer.

    An order without a customer record counts as one customer of its own.
    """
    rows = session.execute(
        select(group.label("grp"), func.count(), func.count(distinct(orders.c.customer_id)),
               func.sum(case((orders.c.customer_id.is_(None), 1), else_=0)),
               _money_sum(session, orders.c.total))
        .group_by(group)
    ).all()
    result: dict[Any, dict[str, Any]] = {}
    for key, n, known, anonymous, revenue in rows:
        customers = int(known) + int(anonymous or 0)
        amount = _money(session, revenue)
        result[key] = {
            "orders": int(n), "customers": customers, "revenue": amount,
            "average_order_value": _divide(amount, int(n)),
            "orders_per_customer": _per(int(n), customers),
            "revenue_per_customer": _divide(amount, customers),
        }
    return result


def _divide(amount: Decimal, n: int) -> Decimal | None:
    if not n:
        return None
    return (amount / n).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _per(count: int, n: int) -> Decimal | None:
    if not n:
        return None
    return (Decimal(count) / n).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _empty_group() -> dict[str, Any]:
    return {"orders": 0, "customers": 0, "revenue": Decimal("0.00"), "average_order_value": None,
            "orders_per_customer": None, "revenue_per_customer": None}


def analytics_kpis(session: Session, shop: Shop, since: datetime, until: datetime,
                   figures: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the analytics page's KPIs for the period [since, until) (definitions on the page):

        redemption_rate        points redeemed / points earned (`program_metrics`).
        expiry_rate            points expired / points earned.
        order_earning_rate     paid orders that earned points / paid orders (by payment time).
        reward_usage_rate      reward codes created in the period that an order used (any order of
                               the shop, any time) / reward codes created in the period.
        loyalty_orders, loyalty_revenue, loyalty_revenue_share
                               paid orders that used a code the program made (reward, tier,
                               referral, second-purchase or reminder code), their totals, and their
                               share of all paid orders' totals.
        members / non_members  paid orders split by whether the customer has an account in the shop
                               (members see and spend points on their page) or checked out as a
                               guest: orders, customers, revenue, average order value, orders and
                               revenue per customer.
        redeemers / non_redeemers  the same split by whether the customer had redeemed a reward
                               (code not refused) by the period's end.
    Orders in another currency than the shop's are left out of money figures and counted in
    `other_currency_orders`.

    `figures`: `program_metrics` of the same period, when the caller has it already.
    """
    if figures is None:
        figures = program_metrics(session, shop.id, since, until)
    counting = _counting_orders(shop.id)
    in_period = (*counting, Order.paid_at >= since, Order.paid_at < until)
    paid = (
        select(Order.id, Order.customer_id, Order.total, Order.currency)
        .where(*in_period)
        .subquery()
    )
    other_currency = int(session.scalar(
        select(func.count()).select_from(paid).where(func.coalesce(paid.c.currency, shop.currency) != shop.currency)
    ) or 0)
    orders = select(paid).where(func.coalesce(paid.c.currency, shop.currency) == shop.currency).subquery()
    all_orders = int(session.scalar(select(func.count()).select_from(paid)) or 0)
    earned_orders = int(session.scalar(
        select(func.count()).select_from(paid)
        .where(select(PointLot.id).where(PointLot.order_id == paid.c.id, PointLot.points > 0).exists())
    ) or 0)

    codes, code = _order_codes(session)
    used = (
        select(Order.id.label("order_id"), IssuedCode.purpose.label("purpose"), IssuedCode.id.label("code_id"))
        .select_from(Order)
        .join(codes, true())
        .join(IssuedCode, and_(IssuedCode.shop_id == shop.id, func.upper(IssuedCode.code) == code))
        .where(*counting, Order.paid_at >= since)
        .subquery()
    )
    reward_codes = (IssuedCode.shop_id == shop.id, IssuedCode.purpose == "reward",
                    IssuedCode.status == CodeStatus.CREATED, IssuedCode.created_at >= since, IssuedCode.created_at < until)
    rewards_created = int(session.scalar(select(func.count()).where(*reward_codes)) or 0)
    rewards_used = int(session.scalar(
        select(func.count(distinct(used.c.code_id)))
        .join(IssuedCode, IssuedCode.id == used.c.code_id)
        .where(*reward_codes)
    ) or 0)
    # Orders of the period that used a program code, each once, read in one pass over the period's
    # orders and their codes.
    loyalty = (
        select(Order.id, Order.total)
        .select_from(Order)
        .join(codes, true())
        .join(IssuedCode, and_(IssuedCode.shop_id == shop.id, func.upper(IssuedCode.code) == code))
        .where(*in_period, func.coalesce(Order.currency, shop.currency) == shop.currency)
        .distinct()
        .subquery()
    )
    loyalty_orders, loyalty_revenue = session.execute(
        select(func.count(), _money_sum(session, loyalty.c.total)).select_from(loyalty)).one()
    with_code = {"orders": int(loyalty_orders), "revenue": _money(session, loyalty_revenue)}

    member = case((Customer.platform_id.is_not(None), 1), else_=0)
    member_rows = (
        select(orders, func.coalesce(member, 0).label("member"))
        .outerjoin(Customer, Customer.id == orders.c.customer_id)
        .subquery()
    )
    members = _spend_groups(session, shop, member_rows, member_rows.c.member)
    total_revenue = sum((g["revenue"] for g in members.values()), Decimal("0.00"))
    redeemed = (
        select(Redemption.id).where(Redemption.customer_id == orders.c.customer_id, Redemption.created_at < until,
                                    Redemption.status != RedemptionStatus.FAILED)
        .exists()
    )
    redeemer_rows = select(orders, case((redeemed, 1), else_=0).label("redeemer")).subquery()
    redeemers = _spend_groups(session, shop, redeemer_rows, redeemer_rows.c.redeemer)
    return {
        "since": since,
        "until": until,
        "currency": shop.currency,
        "redemption_rate": figures["redemption_rate"],
        "points_earned": figures["points_earned"],
        "points_redeemed": figures["points_redeemed"],
        "points_expired": figures["points_expired"],
        "expiry_rate": _rate(figures["points_expired"], figures["points_earned"]),
        "paid_orders": all_orders,
        "earning_orders": earned_orders,
        "order_earning_rate": _rate(earned_orders, all_orders),
        "reward_codes_created": rewards_created,
        "reward_codes_used": rewards_used,
        "reward_usage_rate": _rate(rewards_used, rewards_created),
        "loyalty_orders": with_code["orders"],
        "loyalty_revenue": with_code["revenue"],
        "revenue": total_revenue,
        "loyalty_revenue_share": (with_code["revenue"] / total_revenue).quantize(_RATE_PLACES, rounding=ROUND_HALF_UP)
        if total_revenue else None,
        "members": members.get(1, _empty_group()),
        "non_members": members.get(0, _empty_group()),
        "redeemers": redeemers.get(1, _empty_group()),
        "non_redeemers": redeemers.get(0, _empty_group()),
        "other_currency_orders": other_currency,
    }
