"""Marketing consent: what the platform says, our double opt-in, unsubscribes — with proof.

No Flask here. Every change writes a `ConsentEvent` (timestamped proof); the customer row keeps
the current state and its source.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.models import ConsentEvent, Customer, Shop, utcnow
from connectors import types as ct


def _event(session: Session, customer: Customer, kind: str, source: str, detail: dict[str, Any] | None = None,
           at: datetime | None = None) -> ConsentEvent:
    event = ConsentEvent(shop_id=customer.shop_id, customer_id=customer.id, kind=kind, source=source,
                         detail=detail or {}, created_at=at or utcnow())
    session.add(event)
    return event


def platform_consent(shop: Shop, c: ct.Customer, meta_key: str, true_values: tuple[str, ...]) -> bool | None:
    """Return the consent the platform states for `c` (None when it says nothing).

    Shopify states it (`email_marketing_consent`); WooCommerce core has no field, so a shop
    chooses a customer meta key (e.g. from a newsletter plugin) in its program.
    """
    if c.accepts_marketing is not None:
        return c.accepts_marketing
    if c.meta:  # customer meta is where a WooCommerce newsletter plugin keeps consent
        for key, value in c.meta:
            if key == meta_key:
                return value.strip().lower() in {v.lower() for v in true_values}
    return None


def apply_platform_consent(session: Session, shop: Shop, customer: Customer, c: ct.Customer) -> bool | None:
    """Set the customer's consent from the platform's when it changed, with its proof (a consent
    event); return the new state, or None when nothing changed."""
    from app.program import current_program

    _, program = current_program(session, shop)
    rules = program.reminders.consent
    state = platform_consent(shop, c, rules.woocommerce_meta_key, rules.woocommerce_meta_true_values)
    if state is None:
        return None
    at = c.marketing_consent_at or c.updated_at or utcnow()
    if customer.accepts_marketing == state and customer.consent_source == shop.platform.value:
        return None
    if customer.consent_at is not None and at < customer.consent_at:
        return None  # an older statement than the one we hold
    if state and customer.unsubscribed_at is not None and at <= customer.unsubscribed_at:
        return None  # they unsubscribed with us after the platform recorded this opt-in
    customer.accepts_marketing = state
    customer.consent_source = shop.platform.value
    customer.consent_at = at
    if state:
        customer.unsubscribed_at = None
    _event(session, customer, "granted" if state else "revoked", shop.platform.value, at=at)
    return state


def apply_checkout_consent(session: Session, shop: Shop, customer: Customer, checkout_id: str, at: datetime) -> bool:
    """Record the consent a buyer gave with a checkout's own tick-box; False when it changes nothing.

    For a buyer the platform states nothing else about (a guest checkout has no customer object,
    so no `email_marketing_consent`). The proof names the checkout. A statement newer than the
    checkout (a revocation, an unsubscribe with us) wins; a customer who already consents gets no
    second proof.
    """
    if customer.accepts_marketing is True or customer.redacted_at is not None:
        return False
    if customer.consent_at is not None and at < customer.consent_at:
        return False
    if customer.unsubscribed_at is not None and at <= customer.unsubscribed_at:
        return False
    customer.accepts_marketing = True
    customer.consent_source = "checkout"
    customer.consent_at = at
    customer.unsubscribed_at = None
    session.add(ConsentEvent(shop_id=customer.shop_id, customer_id=customer.id, kind="granted", source="checkout",
                             detail={"platform": shop.platform.value, "checkout": checkout_id}, created_at=at))
    return True


def unsubscribe(session: Session, customer: Customer, *, source: str, detail: dict[str, Any] | None = None) -> bool:
    """Unsubscribe at once from every reminder; returns False when already unsubscribed."""
    if customer.unsubscribed_at is not None:
        return False
    now = utcnow()
    customer.unsubscribed_at = now
    customer.accepts_marketing = False
    customer.consent_source = source
    customer.consent_at = now
    _event(session, customer, "unsubscribed", source, detail, at=now)
    session.flush()
    return True


def confirm_double_opt_in(session: Session, customer: Customer, *, detail: dict[str, Any] | None = None) -> bool:
    """Record consent given through our confirmation link; returns False when already confirmed."""
    if customer.accepts_marketing and customer.consent_source == "double_opt_in":
        return False
    now = utcnow()
    customer.accepts_marketing = True
    customer.consent_source = "double_opt_in"
    customer.consent_at = now
    customer.unsubscribed_at = None
    _event(session, customer, "doi_confirmed", "double_opt_in", detail, at=now)
    session.flush()
    return True


def may_receive(customer: Customer, *, marketing: bool, transactional_without_consent: bool) -> str | None:
    """Return None when the customer may get this kind of e-mail, else the reason why not."""
    if customer.banned_at is not None:
        return "banned"
    if not customer.email:
        return "no_email"
    if customer.unsubscribed_at is not None:
        return "unsubscribed"
    if marketing or not transactional_without_consent:
        if customer.accepts_marketing is not True:
            return "no_consent"
    return None
