"""Reminder sweeps and sends.

`sweep_reminders` (what the clock triggers, and `flask reminders sweep`) creates due message rows
and enqueues one `send_reminder` job per due row with a deterministic id. `send_reminder` claims
the row, asks `app.messaging.reminders.decide`, and sends through SMTP (or the dev outbox).

Exactly-once and its one gap: the row is marked `sending` and committed before the SMTP
handover, and `sent` after it. If a worker dies between the handover and that second commit, the
row stays `sending`; after 10 minutes the sweep releases it and it is sent again with the same
Message-ID. So a crash at that instant can cause at most one extra copy per crash — never a lost
reminder, and never a copy from overlapping sweeps or retried jobs (tested).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from email.utils import make_msgid
from typing import Any

from sqlalchemy import select

from app.loyalty import codes, ledger, vouchers
from app import config
from app.messaging import consent, links
from app.db import session_scope
from app.models import (
    Checkout,
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    MessageStatus,
    Order,
    ReminderMessage,
    Shop,
    TierChange,
    utcnow,
)
from app.i18n import translations
from app.messaging.render import customer_language
from app.program import Program, current_program
from app.messaging.reminders import decide, expiring_on, sweep
from connectors import get_connector

logger = logging.getLogger(__name__)

KIND = {"cart": "cart_reminder", "winback": "winback", "second_purchase": "second_purchase",
        "expiry": "expiry_notice", "tier_change": "tier_change", "points_earned": "points_earned",
        "doi": "doi_confirm", "bounce_back": "bounce_back"}
KIND["voucher"] = "reward_code"  # a redeemed partner voucher's code (app.loyalty.vouchers)
RETRY_DELAYS = (60, 300, 1800, 7200)  # seconds; a send failing this often more is marked failed
# How long a message waits for its code to be created in the shop; after that (or when the shop
# refused the code) it goes without it, or not at all when the code is what it is about.
CODE_WAIT = timedelta(hours=2)
CODE_IS_THE_MESSAGE = frozenset({"second_purchase", "bounce_back"})


def _now(at: str | None) -> datetime:
    return datetime.fromisoformat(at) if at else utcnow()


def enqueue_send(message_id: int, at: str | None = None) -> bool:
    """Enqueue the send job of one message (no-op when it is already queued)."""
    from app.queues import enqueue_once

    args: tuple[Any, ...] = (message_id,) if at is None else (message_id, at)
    return enqueue_once("reminders", "jobs.reminders.send_reminder", *args, job_id=f"send-reminder-{message_id}")


def sweep_reminders(at: str | None = None) -> dict[str, Any]:
    """Create due reminder rows and enqueue their sends, as of `at` (ISO-8601, default now)."""
    when = _now(at)
    with session_scope() as session:
        created, due = sweep(session, when)
    enqueued = sum(1 for message_id in due if enqueue_send(message_id, at))
    if enqueued or any(created.values()):
        logger.info("reminder sweep", extra={"enqueued": enqueued})
    return {"created": created, "due": len(due), "enqueued": enqueued}


def _code_context(row: IssuedCode | None, language: str) -> dict[str, Any] | None:
    from app.messaging.render import format_money

    if row is None or row.status != CodeStatus.CREATED:
        return None  # a code that does not exist in the shop is never put in an e-mail
    if row.ends_early_at is not None or row.used_at is not None:
        return None  # nor one being switched off or taken back, or one already used
    value = Decimal(row.spec["value"])
    kind = row.spec["kind"]
    if kind == "percentage":
        value_text = f"{value.normalize():f} %" if language == "de" else f"{value.normalize():f}%"
    elif kind == "fixed_amount":
        value_text = format_money(value, row.spec["currency"], language)
    elif kind == vouchers.PURPOSE:
        value_text = vouchers.value_text(row.spec, language)
    else:
        value_text = row.spec["title"]
    minimum = row.spec.get("minimum_amount")
    return {"code": row.code, "value_text": value_text, "expires_at": row.expires_at,
            "minimum": format_money(Decimal(minimum), row.spec["currency"], language) if minimum else None}


def _incentive(session, message: ReminderMessage, shop: Shop, customer: Customer, program: Program):  # type: ignore[no-untyped-def]
    """Return the message's incentive code row (recorded once), or None when it has none."""
    if message.code_id is not None:
        return session.get(IssuedCode, message.code_id)
    if message.campaign in ("second_purchase", "bounce_back"):
        row = session.get(IssuedCode, message.context.get("code_id"))
        message.code_id = row.id if row else None
        return row
    if message.campaign == "points_earned":
        row = _bounce_back_of_entry(session, message, program)
        message.code_id = row.id if row else None
        return row
    cart, winback = program.reminders.cart, program.reminders.winback
    if message.campaign == "cart" and cart.incentive_step and message.step == cart.incentive_step:
        percent, days, purpose = cart.incentive_percent, cart.incentive_valid_days, "cart"
    elif message.campaign == "winback" and winback.incentive_percent:
        percent, days, purpose = winback.incentive_percent, winback.incentive_valid_days, "winback"
    else:
        return None
    row, _ = codes.record_code(
        session, shop, purpose=purpose, source_key=str(message.id), customer_id=customer.id,
        title=translations(customer_language(customer, shop)).gettext("%(percent)s %% for you")
        % {"percent": percent},
        kind="percentage", value=percent, valid_days=days,
        platform_customer_id=customer.platform_id, customer_email=customer.email,
    )
    message.code_id = row.id
    return row


def _bounce_back_of_entry(session, message: ReminderMessage, program: Program) -> IssuedCode | None:  # type: ignore[no-untyped-def]
    """Return the bounce-back code of the order a points-earned e-mail is about, when it goes
    with that e-mail (`program.bounce_back.send_email`; see `reminders.sweep_bounce_back`)."""
    from app.loyalty.decide import BOUNCE_BACK

    entry = session.get(LedgerEntry, message.context.get("entry_id"))
    if entry is None or entry.order_id is None or not program.bounce_back.send_email:
        return None
    return session.scalars(select(IssuedCode).where(
        IssuedCode.shop_id == entry.shop_id, IssuedCode.purpose == BOUNCE_BACK,
        IssuedCode.source_key == str(entry.order_id))).first()


def _order_number_of_code(session, row: IssuedCode | None) -> str:  # type: ignore[no-untyped-def]
    """Return the number of the order that earned a bounce-back code ("" when unknown)."""
    if row is None or not row.source_key.isdigit():
        return ""
    return session.scalar(select(Order.number).where(Order.id == int(row.source_key))) or ""


def build_context(session, message: ReminderMessage, shop: Shop, customer: Customer, program: Program,
                  code: IssuedCode | None, cfg: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Return the template context of a message (shop, customer, balance, tier, code, links)."""

    public, secret = cfg["PUBLIC_URL"], cfg["SECRET_KEY"]
    bal = ledger.balance(session, customer.id)
    shop_url = get_connector(shop.platform.value).storefront_url(shop.domain)
    context: dict[str, Any] = {
        "shop": {"name": shop.name or shop.domain, "colour": shop.brand_color or "#2f6f4f", "url": shop_url,
                 "address": shop.address, "timezone": shop.timezone},
        "customer": {"first_name": customer.first_name},
        "balance": bal.available,
        "balance_available": bal.available,
        "balance_pending": bal.pending,
        "tier": customer.tier,
        "code": _code_context(code, customer_language(customer, shop)),
        "shop_url": shop_url,
        "rewards_url": links.url(public, secret, "customer-page", shop.id, customer.id),
        "unsubscribe_url": links.url(public, secret, "unsubscribe", shop.id, customer.id),
        "step": message.step,
        "point_value": _point_value(shop, program),
    }
    if message.campaign == "cart":
        checkout = session.get(Checkout, message.checkout_id)
        context["cart_total"], context["currency"] = checkout.total, checkout.currency
        context["recovery_url"] = checkout.recovery_url or shop_url
    elif message.campaign == "expiry":
        from sqlalchemy import func

        from app.models import LotState, PointLot

        expiring = session.execute(
            select(func.coalesce(func.sum(PointLot.remaining), 0), func.min(PointLot.expires_at)).where(
                PointLot.customer_id == customer.id, PointLot.remaining > 0,
                PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]),
                *expiring_on(message.context.get("expires_on")))
        ).one()
        context["points_expiring"], context["expires_at"] = int(expiring[0]), expiring[1]
    elif message.campaign == "tier_change":
        change = session.get(TierChange, message.context.get("tier_change_id"))
        tier = program.tier(change.to_tier) if change else None
        perks = []
        if tier is not None:
            if tier.multiplier != 1:
                perks.append(f"x{tier.multiplier.normalize():f}")
            if tier.member_discount_percent:
                perks.append(f"{tier.member_discount_percent.normalize():f} %")
            if tier.free_shipping:
                perks.append("free_shipping")
        context.update(old_tier=change.from_tier if change else None, new_tier=change.to_tier if change else None,
                       perks=perks, upgrade=True)
    elif message.campaign == "doi":
        context["confirm_url"] = links.url(public, secret, "doi", shop.id, customer.id)
    elif message.campaign == "voucher":
        context["reward"] = message.context.get("reward", "")
    elif message.campaign == "points_earned":
        entry = session.get(LedgerEntry, message.context.get("entry_id"))
        order = session.get(Order, entry.order_id) if entry and entry.order_id else None
        context.update(points=entry.delta if entry else 0, order_number=order.number if order else "")
    elif message.campaign == "bounce_back":
        context["order_number"] = _order_number_of_code(session, code)
    return context


def _point_value(shop: Shop, program: Program) -> dict[str, Any] | None:
    """What a point is worth for the e-mails ({"amount": per point, "currency"}), or None."""
    worth = program.point_worth(shop.platform.value)
    return {"amount": worth.amount, "currency": shop.currency} if worth is not None else None


def _claim(session, message_id: int):  # type: ignore[no-untyped-def]
    # Locked on PostgreSQL, skipping a message another worker holds (SQLAlchemy's SQLite dialect
    # leaves FOR UPDATE out: its transactions hold the write lock).
    query = select(ReminderMessage).where(ReminderMessage.id == message_id).with_for_update(skip_locked=True)
    return session.scalars(query).first()


def send_reminder(message_id: int, at: str | None = None) -> str:
    """Decide and, if allowed, send one due message; returns what happened."""
    from app.messaging.render import render
    from app.messaging.send import (
        OutgoingMessage,
        PermanentMailError,
        TransientMailError,
        list_unsubscribe_headers,
        mailer_from_config,
    )

    now = _now(at)
    cfg = config.settings()
    with session_scope() as session:
        message = _claim(session, message_id)
        if message is None or message.status != MessageStatus.SCHEDULED or message.due_at > now:
            return "skipped"
        shop = session.get(Shop, message.shop_id)
        customer = session.get(Customer, message.customer_id) if message.customer_id else None
        assert shop is not None
        _, program = current_program(session, shop)
        decision = decide(session, message, customer, shop, program, now)
        if decision.action == "suppress":
            message.status, message.reason = MessageStatus.SUPPRESSED, decision.reason
            return f"suppressed: {decision.reason}"
        if decision.action == "defer":
            message.due_at, message.reason = decision.until, decision.reason
            return f"deferred: {decision.reason}"
        assert customer is not None
        code = _incentive(session, message, shop, customer, program)
        without_code = False
        if (message.campaign == "points_earned" and code is not None
                and consent.may_receive(customer, marketing=True, transactional_without_consent=False)):
            # A points notice is transactional; a code in it is an offer, so it rides along only
            # for customers who may get marketing e-mails (else the notice goes without it).
            code, without_code = None, True
        if code is not None and code.status != CodeStatus.CREATED:
            # A code that does not exist in the shop is never shown. While it is being created
            # (the code job retries for about 80 minutes), the message waits for it.
            if code.status == CodeStatus.PENDING and now - code.created_at < CODE_WAIT:
                message.due_at, message.reason = now + timedelta(minutes=1), "code_pending"
                return "deferred: code_pending"
            if message.campaign in CODE_IS_THE_MESSAGE:
                reason = f"code_{code.status.value}"
                message.status, message.reason = MessageStatus.SUPPRESSED, reason
                return f"suppressed: {reason}"
            # A cart or win-back reminder still helps without its incentive: it goes without it.
            code, without_code = None, True
        context = build_context(session, message, shop, customer, program, code, cfg)
        rendered = render(KIND[message.campaign], customer_language(customer, shop), context)
        message.message_id = message.message_id or make_msgid(domain="stammkunde.local")
        message.status, message.claimed_at, message.email = MessageStatus.SENDING, now, customer.email
        message.attempts += 1
        outgoing = OutgoingMessage(
            to=customer.email, from_addr=shop.mail_from or cfg["MAIL_FROM"], subject=rendered.subject,
            text=rendered.text, html=rendered.html, message_id=message.message_id,
            headers=list_unsubscribe_headers(context["unsubscribe_url"]),
        )
        attempts = message.attempts
    try:
        mailer_from_config(cfg).send(outgoing)
    except (TransientMailError, PermanentMailError) as exc:
        permanent = isinstance(exc, PermanentMailError) or attempts > len(RETRY_DELAYS)
        with session_scope() as session:
            message = session.get(ReminderMessage, message_id)
            message.error = f"{type(exc).__name__}: {exc}"[:1000]
            if permanent:
                message.status = MessageStatus.FAILED
            else:
                message.status = MessageStatus.SCHEDULED
                message.due_at = now + timedelta(seconds=RETRY_DELAYS[attempts - 1])
                message.reason = "retry"
        logger.warning("reminder send failed", extra={"reminder": message_id, "permanent": permanent})
        return "failed" if permanent else "retry"
    with session_scope() as session:
        message = session.get(ReminderMessage, message_id)
        message.status, message.sent_at, message.error = MessageStatus.SENT, now, None
        message.reason = "without_code" if without_code else None
    return "sent without its code" if without_code else "sent"
