"""Why a balance is what it is: a customer's lots and ledger in words (no Flask here).

Used by `flask customers show --json` and by the admin customer page, so both say the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.i18n import translations
from app.loyalty import ledger
from app.models import CodeStatus, Customer, IssuedCode, LedgerEntry, Order, PointLot, Shop


def N_(message: str) -> str:  # noqa: N802 - babel's marker for "translate later"
    """Mark `message` for the catalog without translating it here."""
    return message


REASON_TEXT = {
    "earn": N_("Earned for order {order}"),
    "refund": N_("Refund {refund} on order {order}"),
    "cancel": N_("Order {order} {why}: remaining points taken back"),
    "restore": N_("Order {order} restored: points given back"),
    "gift_card": N_("Order {order}: points moved to what it earns with {gift_card_paid} paid by gift card"),
    "available": N_("Return window over: points available"),
    "merged_guest": N_("Guest purchases merged into this account"),
    "adjust": N_("Adjusted by staff: {note}"),
    "import": N_("Balance brought over from the previous loyalty program ({file}, line {line})"),
    "redeem": N_("Redeemed for reward {reward}"),
    "redeem_refund": N_("Reward {reward} could not be created in the shop: points given back ({why})"),
    "expired": N_("Points expired"),
    "referral": N_("Referral reward: a friend's order {order} was kept"),
    "referral_step": N_("Referral step {place}: extra points for your friend no. {place} (order {order})"),
    "referral_step_code": N_("Referral step {place}: a lasting {percent} % member code {code} for your friend no. "
                             "{place} (order {order})"),
    "referral_reversed": N_("Referral reward taken back: the friend's order {order} was {why}"),
    "referral_step_reversed": N_("Referral step {place} taken back: the friend's order {order} was {why}"),
    "referral_step_code_reversed": N_("Referral step {place}: member code {code} switched off, the friend's "
                                      "order {order} was {why}"),
    "signup_bonus": N_("Sign-up bonus"),
    "first_order_bonus": N_("First order bonus"),
    "birthday_bonus": N_("Birthday bonus"),
}
# What a customer reads instead (their own page, the shop's storefront): no platform error texts.
CUSTOMER_REASON_TEXT = {
    "redeem_refund": N_("Reward {reward} could not be created in the shop: points given back"),
}
# Why an order stopped counting (`decide.plan_order`'s "cancel" entries, a referral's reversal).
WHY_TEXT = {"cancelled": N_("cancelled"), "refunded": N_("refunded"), "deleted": N_("deleted")}
_WHY_REASONS = ("cancel", "referral_reversed", "referral_step_reversed", "referral_step_code_reversed")


def describe(entry: LedgerEntry, order_number: str | None, language: str | None = None, *,
             for_customer: bool = False) -> str:
    """Return one sentence saying why `entry` exists.

    `language` ("de", "en"): translated; None gives the English ids, as the admin and the CLI
    show them. `for_customer`: the wording a customer reads (no platform error texts).
    """
    detail = dict(entry.detail or {})
    gettext = translations(language).gettext if language else (lambda text: text)
    texts = {**REASON_TEXT, **CUSTOMER_REASON_TEXT} if for_customer else REASON_TEXT
    template = gettext(texts[entry.reason]) if entry.reason in texts else entry.reason
    why = str(detail.get("why", "cancelled"))
    text = template.format(
        order=order_number or detail.get("order") or "?",
        refund=detail.get("refund", ""),
        why=gettext(WHY_TEXT[why]) if entry.reason in _WHY_REASONS and why in WHY_TEXT else why,
        reward=detail.get("reward", ""),
        note=detail.get("note", ""),
        file=detail.get("file", "?"),
        line=detail.get("line", "?"),
        gift_card_paid=" ".join(filter(None, (detail.get("gift_card_paid"), detail.get("currency")))) or "?",
        place=detail.get("place", "?"),
        percent=detail.get("percent", "?"),
        code=detail.get("code") or gettext("(none: the shop cannot restrict a code to this member)"),
    )
    if entry.shortfall:
        text += " " + gettext("(%(points)s points already spent could not be taken back)") % {
            "points": entry.shortfall
        }
    if entry.reason == "earn" and detail.get("base"):
        text += " " + gettext("(%(amount)s eligible)") % {
            "amount": f"{detail['base']} {detail.get('currency') or ''}".strip()
        }
    if entry.reason == "earn" and detail.get("lines"):
        text += " " + product_rules_text(detail["lines"], gettext)
    if entry.reason == "earn" and detail.get("history"):
        text = gettext("Order %(order)s from before the program: no points (brought in for tiers and spend)") % {
            "order": order_number or detail.get("order") or "?"
        }
    if entry.reason == "refund" and detail.get("detail"):
        text += gettext(": corrected to the refund's own lines")
    return text.strip()


def product_rules_text(lines: list[dict[str, Any]], gettext: Any) -> str:
    """Return how an award's lines earned under the shop's product rules, one clause per rule
    ("2× on Summer collection: 391 points; Gift cards: no points"), in parentheses."""
    from decimal import Decimal

    by_rule: dict[str, tuple[str | None, str, int]] = {}
    for line in lines:
        rule = line.get("rule")
        if not rule:
            continue
        _effect, factor, points = by_rule.get(rule, (line.get("effect"), str(line.get("factor") or "1"), 0))
        by_rule[rule] = (line.get("effect"), factor, points + int(line.get("points") or 0))
    clauses = []
    for rule, (effect, factor, points) in by_rule.items():
        if effect == "exclude":
            clauses.append(gettext("%(rule)s: no points") % {"rule": rule})
        else:
            shown = format(Decimal(factor).normalize(), "f")
            clauses.append(gettext("%(factor)s× on %(rule)s: %(points)s points") % {
                "factor": shown, "rule": rule, "points": points})
    return f"({'; '.join(clauses)})" if clauses else ""


def customer_report(session: Session, customer: Customer, shop: Shop | None = None,
                    public_url: str | None = None, language: str | None = None) -> dict[str, Any]:
    """Return balance, tier, referral code, lots and the explained ledger (newest entry last).

    `language`: the ledger's sentences in it ("de"); None gives the English ids.

    The referral code and link are given only once the code exists in the shop; until then
    `referral_code_status` says "pending" (being created) or "failed" (with `referral_code_error`).
    """
    from app.loyalty.referrals import referral_code_row, referral_link

    shop = shop or session.get(Shop, customer.shop_id)
    if public_url is None:
        from app import config

        public_url = config.settings()["PUBLIC_URL"]
    referral = referral_code_row(session, customer) if customer.referral_code else None
    referral_usable = referral is not None and referral.status == CodeStatus.CREATED
    bal = ledger.balance(session, customer.id)
    numbers = dict(
        session.execute(
            select(Order.id, Order.number).where(Order.customer_id == customer.id)
        ).all()
    )
    entries = session.scalars(
        select(LedgerEntry).where(LedgerEntry.customer_id == customer.id).order_by(LedgerEntry.id)
    ).all()
    lots = session.scalars(
        select(PointLot).where(PointLot.customer_id == customer.id).order_by(PointLot.earned_at, PointLot.id)
    ).all()
    return {
        "customer": customer.id,
        "email": customer.email,
        "platform_id": customer.platform_id,
        "available": bal.available,
        "pending": bal.pending,
        "banned": customer.banned_at is not None,
        "tier": customer.tier,
        "tier_period_ends_at": customer.tier_period_ends_at.isoformat() if customer.tier_period_ends_at else None,
        "referral_code": customer.referral_code if referral_usable else None,
        "referral_code_status": referral.status.value if referral is not None else None,
        "referral_code_error": referral.error if referral is not None else None,
        "referral_link": (
            referral_link(shop, customer.referral_code, public_url) if shop and referral_usable else None
        ),
        "referrals": _referral_progress(session, shop, customer),
        "shortfall": sum(e.shortfall for e in entries),
        "lots": [
            {
                "id": lot.id,
                "points": lot.points,
                "remaining": lot.remaining,
                "state": lot.state.value,
                "earned_at": lot.earned_at.isoformat(),
                "available_at": lot.available_at.isoformat(),
                "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
                "order": numbers.get(lot.order_id) if lot.order_id else None,
                "rule": lot.rule,
            }
            for lot in lots
        ],
        "ledger": [
            {
                "id": e.id,
                "delta": e.delta,
                "pending_delta": e.pending_delta,
                "available_delta": e.available_delta,
                "shortfall": e.shortfall,
                "reason": e.reason,
                "why": describe(e, numbers.get(e.order_id) if e.order_id else None, language),
                "by": e.created_by,
                "order": numbers.get(e.order_id) if e.order_id else None,
                "delivery": e.delivery_id,
                "lot": e.lot_id,
                "created_at": e.created_at.isoformat(),
            }
            for e in entries
        ],
    }


def code_state(row: IssuedCode) -> str:
    """Return a code's state as the customer and support read it: its status ("pending",
    "created", "failed"), or for a bounce-back code also "used", "withdrawing" (taken back, the
    shop not confirmed yet) or "withdrawn" (removed from the shop). A used code is never taken
    back, so "used" wins."""
    if row.purpose != "bounce_back" or row.status != CodeStatus.CREATED:
        return row.status.value
    if row.used_at is not None:
        return "used"
    if row.ends_early_at is not None:
        return "withdrawn" if row.deactivated_at is not None else "withdrawing"
    return row.status.value


def _earning_orders(session: Session, rows: Any) -> dict[int, str | None]:
    """Return the numbers of the orders that earned the bounce-back codes among `rows`, by id."""
    ids = {int(r.source_key) for r in rows if r.purpose == "bounce_back" and r.source_key.isdigit()}
    if not ids:
        return {}
    return dict(session.execute(select(Order.id, Order.number).where(Order.id.in_(ids))).all())


def _referral_progress(session: Session, shop: Shop | None, customer: Customer) -> dict[str, Any] | None:
    """Return the member's rewarded referrals (places held), those waiting for their window,
    and the next referral step with how many more rewarded friends it needs; None when the shop
    is unknown or its referrals are off."""
    from app.loyalty.referrals import progress
    from app.program import current_program

    if shop is None:
        return None
    _, program = current_program(session, shop)
    if not program.referral.enabled:
        return None
    now = progress(session, customer, program)
    step = now.next_step
    return {
        "rewarded": now.rewarded,
        "pending": now.pending,
        "next_step": None if step is None else {
            "count": step.count, "to_go": now.to_go, "points": step.points,
            "member_discount_percent": (f"{step.member_discount_percent.normalize():f}"
                                        if step.member_discount_percent is not None else None),
        },
    }


def codes_of(session: Session, customer: Customer) -> list[dict[str, Any]]:
    """Return every code made for the customer with its status, and why it failed (oldest first).

    Only a code with status "created" exists in the shop; "pending" is being created. `state`
    adds what became of a bounce-back code (`code_state`), `order` the number of the order that
    earned it and `end_reason` why it was taken back ("cancelled", "refunded", "deleted").
    """
    rows = session.scalars(
        select(IssuedCode).where(IssuedCode.customer_id == customer.id).order_by(IssuedCode.id)
    ).all()
    numbers = _earning_orders(session, rows)
    return [
        {
            "code": row.code,
            "purpose": row.purpose,
            "status": row.status.value,
            "state": code_state(row),
            "order": numbers.get(int(row.source_key)) if row.purpose == "bounce_back" and row.source_key.isdigit()
            else None,
            "end_reason": row.end_reason,
            "error": row.error,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]


def bounce_back_codes(session: Session, customer: Customer) -> list[dict[str, Any]]:
    """Return the customer's bounce-back codes, newest first, as their own page explains them:
    the order that earned each, its state (`code_state`; an unused code past its end is
    "expired"), what it gives and from which order amount, until when, why one was taken back.
    The code itself only while it is usable in the shop."""
    from app.models import utcnow

    now = utcnow()
    rows = session.scalars(
        select(IssuedCode).where(IssuedCode.customer_id == customer.id, IssuedCode.purpose == "bounce_back")
        .order_by(IssuedCode.id.desc()).limit(50)
    ).all()
    numbers = _earning_orders(session, rows)
    result = []
    for row in rows:
        state = code_state(row)
        if state == "created" and row.expires_at is not None and row.expires_at <= now:
            state = "expired"
        spec = row.spec or {}
        result.append({
            "code": row.code if state == "created" else None,
            "state": state,
            "order": numbers.get(int(row.source_key)) if row.source_key.isdigit() else None,
            "kind": spec.get("kind"),
            "value": spec.get("value"),
            "minimum": spec.get("minimum_amount"),
            "currency": spec.get("currency"),
            "expires_at": row.expires_at,
            "end_reason": row.end_reason,
        })
    return result
