"""Customer identity: platform ids, guests by e-mail, and merging a guest into an account.

Rows are created with INSERT ... ON CONFLICT DO NOTHING and read back, so two workers that see
the same new customer at once end with one row (no check-then-insert).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from app.messaging import consent
from app.db import dialect_insert, insert_row
from app.models import Checkout, ConsentEvent, Customer, LedgerEntry, Order, PointLot, Shop, utcnow
from app.program import Consent
from connectors import types as ct

logger = logging.getLogger(__name__)

_GUEST_WHERE = "platform_id IS NULL AND merged_into_id IS NULL"


def find_by_email(session: Session, shop_id: int, email: str) -> Customer | None:
    """Return the live customer with this e-mail: the account when there is one, else the guest."""
    rows = session.scalars(
        select(Customer)
        .where(Customer.shop_id == shop_id, Customer.email == email, Customer.merged_into_id.is_(None))
        .order_by(Customer.platform_id.is_(None), Customer.id)
    ).all()
    return rows[0] if rows else None


# Every order looks its customer up, locked and read afresh (PostgreSQL; on SQLite the
# transaction holds the write lock, and the dialect leaves FOR UPDATE out).
_BY_PLATFORM_ID = select(Customer).where(
    Customer.shop_id == bindparam("shop_id"), Customer.platform_id == bindparam("platform_id")
).with_for_update().execution_options(populate_existing=True)
_GUEST = select(Customer).where(
    Customer.shop_id == bindparam("shop_id"),
    Customer.email == bindparam("email"),
    Customer.platform_id.is_(None),
    Customer.merged_into_id.is_(None),
).with_for_update().execution_options(populate_existing=True)
_ACCOUNT_OR_GUEST = select(Customer).where(
    Customer.shop_id == bindparam("shop_id"),
    or_(
        Customer.platform_id == bindparam("platform_id"),
        and_(
            Customer.email == bindparam("email"),
            Customer.platform_id.is_(None),
            Customer.merged_into_id.is_(None),
        ),
    ),
).with_for_update().execution_options(populate_existing=True)


def _by_platform_id(session: Session, shop_id: int, platform_id: str) -> Customer | None:
    return session.scalars(_BY_PLATFORM_ID, {"shop_id": shop_id, "platform_id": platform_id}).first()


def _guest(session: Session, shop_id: int, email: str) -> Customer | None:
    return session.scalars(_GUEST, {"shop_id": shop_id, "email": email}).first()


def _insert_account(session: Session, shop: Shop, c: ct.Customer, email: str | None) -> tuple[Customer, bool]:
    """Insert the account (the new row comes back from the INSERT), or read the one that won a
    race, and apply the profile to it; True when this call inserted it."""
    now = utcnow()
    row = insert_row(session, Customer, dict(shop_id=shop.id, platform_id=c.id, email=email, created_at=now,
                                             updated_at=now), conflict_on=["shop_id", "platform_id"])
    inserted = row is not None
    if row is None:
        row = _by_platform_id(session, shop.id, c.id)
        assert row is not None
    _apply_profile(session, shop, row, c)
    return row, inserted


def _insert_guest(session: Session, shop_id: int, email: str) -> Customer:
    from sqlalchemy import text

    stmt = dialect_insert(session, Customer.__table__).values(
        shop_id=shop_id, email=email, created_at=utcnow(), updated_at=utcnow()
    )
    session.execute(
        stmt.on_conflict_do_nothing(index_elements=["shop_id", "email"], index_where=text(_GUEST_WHERE))
    )
    row = _guest(session, shop_id, email)
    assert row is not None
    return row


def merge_guest(session: Session, guest: Customer, account: Customer) -> None:
    """Move a guest's orders, checkouts, lots and entries to the account, and say so in the ledger."""
    if guest.id == account.id or guest.merged_into_id is not None:
        return
    for model in (Order, Checkout, PointLot, LedgerEntry):
        session.execute(update(model).where(model.customer_id == guest.id).values(customer_id=account.id))
    guest.merged_into_id = account.id
    session.add(
        LedgerEntry(
            shop_id=account.shop_id,
            customer_id=account.id,
            delta=0,
            reason="merged_guest",
            source_type="customer",
            source_id=str(guest.id),
            detail={"guest_customer": guest.id},
        )
    )
    session.flush()
    logger.info("guest merged into account", extra={"shop": account.shop_id, "customer": account.id})


@dataclass(frozen=True)
class Unknown:
    """What we hold of a customer we have not stored yet: nothing (for `profile_update`)."""

    accepts_marketing: bool | None = None
    consent_source: str | None = None
    consent_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    platform_updated_at: datetime | None = None
    redacted_at: datetime | None = None


UNKNOWN = Unknown()


def profile_update(shop: Shop, current: Any, c: ct.Customer, rules: Consent,
                   now: datetime) -> tuple[dict[str, Any], consent.ConsentChange | None] | None:
    """Return the columns a platform profile sets on what we hold (`current`: the row, or
    `UNKNOWN` for a customer not stored yet) with the consent change it states, or None when the
    profile is older than the one we hold or the customer was erased (`app.privacy`). Pure."""
    newer = (current.platform_updated_at is None or c.updated_at is None
             or c.updated_at >= current.platform_updated_at)
    if not newer or current.redacted_at is not None:
        return None
    fields: dict[str, Any] = {}
    if c.email:
        fields["email"] = c.email
    for attr in ("first_name", "last_name", "locale"):
        value = getattr(c, attr)
        if value:
            fields[attr] = value
    if c.birthday is not None:
        fields["birthday"] = c.birthday
    change = consent.platform_consent_change(shop, current, c, rules, now)
    if change is not None:
        fields.update(change.customer_fields())
    if c.updated_at is not None:
        fields["platform_updated_at"] = c.updated_at
    return fields, change


def _apply_profile(session: Session, shop: Shop, row: Customer, c: ct.Customer) -> None:
    """Copy a newer platform profile onto the row, with its consent (and the consent's proof)."""
    # The program (which the consent rules read) is loaded before the row changes, so its query
    # does not flush them as an UPDATE of their own.
    from app.program import current_program

    _, program = current_program(session, shop)
    changes = profile_update(shop, row, c, program.reminders.consent, utcnow())
    if changes is None:
        return
    fields, change = changes
    for name, value in fields.items():
        setattr(row, name, value)
    if change is not None:
        session.add(ConsentEvent(**change.event_values(row.shop_id, row.id)))


def upsert_customer(session: Session, shop: Shop, c: ct.Customer, *, email: str | None = None) -> Customer | None:
    """Return our row for a platform customer, creating or merging as needed.

    An account (platform id) adopts the guest row with the same e-mail, or absorbs it when both
    exist. A guest (no id) is keyed by e-mail and joins an existing account with that e-mail.
    Returns None when there is neither an id nor an e-mail.
    """
    return _upsert(session, shop, c, email)[0]


def _upsert(session: Session, shop: Shop, c: ct.Customer, email: str | None) -> tuple[Customer | None, bool]:
    """`upsert_customer`, and True when this call inserted a new account with no history (no
    guest merged into it)."""
    email = c.email or email
    if c.id is not None:
        # One query finds both the account and a guest with its e-mail (locked on PostgreSQL).
        found = session.scalars(_ACCOUNT_OR_GUEST, {"shop_id": shop.id, "platform_id": c.id, "email": email}).all()
        row = next((r for r in found if r.platform_id == c.id), None)
        guest = next((r for r in found if r.platform_id is None), None)
        inserted = new = False
        if row is None and guest is not None:
            adopted = session.execute(
                update(Customer)
                .where(Customer.id == guest.id, Customer.platform_id.is_(None))
                .values(platform_id=c.id, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
            if adopted:
                session.refresh(guest)
                row, guest = guest, None
            else:  # another worker adopted it meanwhile: ours is a new account; look for a guest again
                row, new = _insert_account(session, shop, c, email)
                guest = _guest(session, shop.id, email)
                inserted = True
        if row is None:
            row, new = _insert_account(session, shop, c, email)
            inserted = True
        if not inserted:  # _insert_account applied the profile itself
            _apply_profile(session, shop, row, c)
        if guest is not None and guest.id != row.id:
            merge_guest(session, guest, row)
            new = False  # it has the guest's history now
        # Inserted, adopted by an UPDATE, or read FOR UPDATE: the row is locked (PostgreSQL).
        return row, new
    if not email:
        return None, False
    row = find_by_email(session, shop.id, email) or _insert_guest(session, shop.id, email)
    _apply_profile(session, shop, row, c)
    return row, False


def customer_for_order(session: Session, shop: Shop, order: ct.Order) -> tuple[Customer | None, bool]:
    """Return the customer an order belongs to (None for a guest order without an e-mail), and
    True when this call created them (a new account: the order is their only one)."""
    customer = order.customer or ct.Customer(id=None, email=order.email)
    return _upsert(session, shop, customer, order.email)


def search_customers(session: Session, query: str, limit: int, *,
                     shop_ids: frozenset[int] | None = None) -> list[tuple[Customer, Shop]]:
    """Return up to `limit` live customers (with their shop) that staff may mean by `query`,
    in the shops `shop_ids` (None: every shop): `app.loyalty.directory.search_customers` (any
    part of the e-mail or name, an order number or id, a code the program made), ordered by e-mail.
    """
    from app.loyalty import directory

    return [(found.customer, found.shop) for found in directory.search_customers(session, query, limit, shop_ids=shop_ids)]
