"""Marketing consent: what the platform says, our double opt-in, unsubscribes — with proof.

No Flask here. Every change writes a `ConsentEvent` (timestamped proof); the customer row keeps
the current state and its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.models import ConsentEvent, Customer, Shop, utcnow
from app.program import Consent
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


@dataclass(frozen=True)
class ConsentChange:
    """A consent the platform states that differs from what we hold: the customer's new state
    and its proof (a consent event)."""

    state: bool
    source: str
    at: datetime

    def customer_fields(self) -> dict[str, Any]:
        """Return the customer's columns after the change (a grant ends an unsubscribe)."""
        fields: dict[str, Any] = {"accepts_marketing": self.state, "consent_source": self.source,
                                  "consent_at": self.at}
        if self.state:
            fields["unsubscribed_at"] = None
        return fields

    def event_values(self, shop_id: int, customer_id: int) -> dict[str, Any]:
        """Return the column values of the consent event that proves the change."""
        return dict(shop_id=shop_id, customer_id=customer_id, kind="granted" if self.state else "revoked",
                    source=self.source, detail={}, created_at=self.at)


def platform_consent_change(shop: Shop, current: Any, c: ct.Customer, rules: Consent,
                            now: datetime) -> ConsentChange | None:
    """Return the change the platform's statement about `c` makes to what we hold (`current`:
    any object with `accepts_marketing`, `consent_source`, `consent_at` and `unsubscribed_at`,
    e.g. a `Customer` row), or None when it changes nothing. Pure."""
    state = platform_consent(shop, c, rules.woocommerce_meta_key, rules.woocommerce_meta_true_values)
    if state is None:
        return None
    at = c.marketing_consent_at or c.updated_at or now
    if current.accepts_marketing == state and current.consent_source == shop.platform.value:
        return None
    if current.consent_at is not None and at < current.consent_at:
        return None  # an older statement than the one we hold
    if state and current.unsubscribed_at is not None and at <= current.unsubscribed_at:
        return None  # they unsubscribed with us after the platform recorded this opt-in
    return ConsentChange(state=state, source=shop.platform.value, at=at)


def apply_platform_consent(session: Session, shop: Shop, customer: Customer, c: ct.Customer) -> bool | None:
    """Set the customer's consent from the platform's when it changed, with its proof (a consent
    event); return the new state, or None when nothing changed."""
    from app.program import current_program

    _, program = current_program(session, shop)
    change = platform_consent_change(shop, customer, c, program.reminders.consent, utcnow())
    if change is None:
        return None
    for name, value in change.customer_fields().items():
        setattr(customer, name, value)
    session.add(ConsentEvent(**change.event_values(customer.shop_id, customer.id)))
    return change.state


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
