"""Redeeming rewards: automatic, by staff, or by the customer — one mechanism (no Flask here).

`redeem` deducts the points from lots (oldest first) and records the redemption and its pending
code in one transaction, before any platform call. The code job creates the code afterwards; if the
shop refuses for good, `give_back` returns the points with an entry saying why.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.loyalty import codes, ledger, vouchers
from app.db import dialect_insert
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    LotState,
    PointLot,
    Redemption,
    RedemptionStatus,
    Shop,
    utcnow,
)
from app.i18n import translations
from app.messaging.render import customer_language
from app.program import Program, Reward, current_program

logger = logging.getLogger(__name__)


class RedemptionError(ValueError):
    """The redemption is not allowed; the message says why in words a person understands."""


class VoucherSoldOutError(RedemptionError):
    """A partner_voucher reward's pool has no code left: nothing is redeemed, no points taken."""


def affordable(program: Program, customer: Customer, available: int,
               sold_out: frozenset[str] = frozenset()) -> list[Reward]:
    """Return the active rewards this customer may redeem now, cheapest first (`sold_out`: the
    empty voucher pools, whose partner_voucher rewards cannot be redeemed; see vouchers.sold_out)."""
    return sorted(
        (r for r in program.rewards if r.active and r.points <= available and _tier_allows(r, customer)
         and vouchers.reward_in_stock(r, sold_out)),
        key=lambda r: (r.points, r.name),
    )


def shop_cannot_give(shop: Shop, reward: Reward) -> str | None:
    """Return why this shop cannot give `reward` now, or None when it can.

    A combination offer in a WooCommerce store relies on the Stammkunde plugin to refuse the
    coupon until the cart holds what must be bought (core WooCommerce has no such condition): a
    store that never connected the plugin (no plugin secret) would give the product without the
    purchase, so the offer is not given there.
    """
    if reward.kind == "buy_x_get_y" and shop.platform.value == "woocommerce" and shop.plugin_secret_enc is None:
        return "combination offers in WooCommerce need the Stammkunde plugin connected (it checks what must be bought)"
    return None


def _tier_allows(reward: Reward, customer: Customer) -> bool:
    return not reward.tiers or customer.tier in reward.tiers


def redeem(
    session: Session,
    shop: Shop,
    customer: Customer,
    reward_name: str,
    *,
    source: str,
    actor: str | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Redemption:
    """Redeem a reward for the customer; returns the (new or already existing) redemption.

    The same `idempotency_key` returns the first redemption (a double click redeems once).

    A partner_voucher reward claims one unused code of its pool in this transaction
    (`vouchers.claim_code`); the redemption is then complete at once (its code exists).

    Raises:
        RedemptionError: banned, unknown or unaffordable reward, or not in the reward's tier.
        VoucherSoldOutError: the reward's voucher pool has no code left. As with every
            RedemptionError, the caller rolls back: nothing of the redemption stays.
    """
    now = now or utcnow()
    key = idempotency_key or f"{source}-{uuid.uuid4().hex}"
    existing = _by_key(session, shop.id, key)
    if existing is not None:
        return existing
    ledger.lock_customer(session, customer.id)
    session.refresh(customer)
    existing = _by_key(session, shop.id, key)
    if existing is not None:
        return existing
    if customer.banned_at is not None:
        raise RedemptionError("this customer is banned from the program")
    version, program = current_program(session, shop)
    reward = program.reward(reward_name)
    if reward is None or not reward.active:
        raise RedemptionError(f"no active reward called {reward_name!r}")
    if not _tier_allows(reward, customer):
        raise RedemptionError(f"{reward.name!r} is only for tiers {', '.join(reward.tiers)}")
    why_not = shop_cannot_give(shop, reward)
    if why_not is not None:
        raise RedemptionError(why_not)
    available = ledger.balance(session, customer.id).available
    if available < reward.points:
        raise RedemptionError(f"not enough points: {available} available, {reward.name!r} costs {reward.points}")

    stmt = dialect_insert(session, Redemption.__table__).values(
        shop_id=shop.id,
        customer_id=customer.id,
        reward_name=reward.name,
        reward=reward.model_dump(mode="json"),
        program_version=version,
        points=reward.points,
        source=source,
        actor=actor,
        idempotency_key=key,
        status=RedemptionStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    new_id = session.execute(
        stmt.on_conflict_do_nothing(index_elements=["shop_id", "idempotency_key"]).returning(
            Redemption.__table__.c.id
        )
    ).scalar()
    if new_id is None:  # a concurrent request with the same key won
        found = _by_key(session, shop.id, key)
        assert found is not None
        return found
    redemption = session.get(Redemption, new_id)
    assert redemption is not None
    claimed = None
    if reward.kind == "partner_voucher":
        assert reward.pool is not None
        claimed = vouchers.claim_code(session, shop, reward.pool, redemption.id, now)
        if claimed is None:
            raise VoucherSoldOutError(f"{reward.name!r} is sold out: its voucher pool has no code left")
    try:
        taken = ledger.spend_oldest_first(session, customer.id, reward.points)
    except ledger.InsufficientPointsError:
        raise RedemptionError("not enough available points") from None
    session.add(
        LedgerEntry(
            shop_id=shop.id,
            customer_id=customer.id,
            delta=-reward.points,
            pending_delta=0,
            available_delta=-reward.points,
            reason="redeem",
            source_type="redemption",
            source_id=str(redemption.id),
            created_by=actor,
            detail={"reward": reward.name, "source": source, "lots": [list(t) for t in taken]},
        )
    )
    title = translations(customer_language(customer, shop)).gettext("Loyalty points: %(reward)s") % {
        "reward": reward.name}
    if claimed is not None:
        code = vouchers.record_claimed_code(session, shop, customer, redemption, reward, claimed, title=reward.name,
                                            now=now)
        redemption.issued_code_id = code.id
        redemption.status = RedemptionStatus.CREATED
        session.flush()
        logger.info("partner voucher redeemed",
                    extra={"shop": shop.id, "customer": customer.id, "redemption": redemption.id})
        return redemption
    code, _ = codes.record_code(
        session,
        shop,
        purpose="reward",
        source_key=str(redemption.id),
        customer_id=customer.id,
        title=title,
        kind=reward.kind,
        value=reward.percent_off if reward.kind == "buy_x_get_y" else (
            reward.value if reward.value is not None else Decimal("0")),
        valid_days=reward.valid_days,
        platform_customer_id=customer.platform_id,
        customer_email=customer.email,
        minimum_amount=reward.minimum_amount,
        product_ids=(reward.product_id,) if reward.product_id else (),
        variant_ids=(reward.variant_id,) if reward.variant_id else (),
        now=now,
        **_combination(reward),
    )
    redemption.issued_code_id = code.id
    session.flush()
    logger.info("reward redeemed", extra={"shop": shop.id, "customer": customer.id, "redemption": redemption.id})
    return redemption


def _combination(reward: Reward) -> dict[str, object]:
    """The code keywords of a combination offer (buy_x_get_y): what must be bought, how many, and
    how many of the product it gives (1 unless the reward says)."""
    if reward.kind != "buy_x_get_y":
        return {}
    return {"buys_product_ids": reward.buys_product_ids, "buys_variant_ids": reward.buys_variant_ids,
            "buys_quantity": reward.buys_quantity, "gets_quantity": reward.gets_quantity or 1,
            "buys_label": reward.buys_label}


def _by_key(session: Session, shop_id: int, key: str) -> Redemption | None:
    return session.scalars(
        select(Redemption).where(Redemption.shop_id == shop_id, Redemption.idempotency_key == key)
    ).first()


def give_back(session: Session, redemption: Redemption, reason: str) -> LedgerEntry | None:
    """Return a failed redemption's points to the lots they came from, with an entry saying why."""
    ledger.lock_customer(session, redemption.customer_id)
    spent = ledger.find_entry(session, redemption.shop_id, "redemption", str(redemption.id), "redeem")
    if spent is None:
        return None
    now = utcnow()
    entry = LedgerEntry(
        shop_id=redemption.shop_id,
        customer_id=redemption.customer_id,
        delta=redemption.points,
        pending_delta=0,
        available_delta=redemption.points,
        reason="redeem_refund",
        source_type="redemption",
        source_id=str(redemption.id),
        detail={"reward": redemption.reward_name, "why": reason},
    )
    appended = ledger.append(session, entry)
    if appended is None:
        return None
    for lot_id, points in spent.detail.get("lots", []):
        lot = session.get(PointLot, lot_id)
        if lot is None:
            continue
        lot.remaining += points
        if lot.state == LotState.SPENT:
            lot.state = LotState.AVAILABLE
        if lot.expires_at is not None and lot.expires_at <= now:
            lot.state = LotState.AVAILABLE  # the expiry sweep takes it with an entry of its own
    redemption.status = RedemptionStatus.FAILED
    redemption.error = reason
    session.flush()
    return appended


def redemptions_of(session: Session, customer: Customer) -> list[dict[str, object]]:
    """Return the customer's redemptions with their codes, newest first (CLI, admin, page)."""
    rows = session.execute(
        select(Redemption, IssuedCode)
        .outerjoin(IssuedCode, IssuedCode.id == Redemption.issued_code_id)
        .where(Redemption.customer_id == customer.id)
        .order_by(Redemption.id.desc())
    ).all()
    return [
        {
            "redemption": r.id,
            "reward": r.reward_name,
            "points": r.points,
            "status": r.status.value,
            "source": r.source,
            "code": c.code if c is not None and c.status == CodeStatus.CREATED else None,
            "code_status": c.status.value if c is not None else None,
            "expires_at": c.expires_at.isoformat() if c is not None and c.expires_at else None,
            "error": r.error,
            "created_at": r.created_at.isoformat(),
        }
        for r, c in rows
    ]


def maybe_auto_redeem(session: Session, shop: Shop, customer: Customer) -> Redemption | None:
    """Redeem the cheapest affordable reward when the shop turned automatic redemption on."""
    _, program = current_program(session, shop)
    if not program.redemption.auto or customer.banned_at is not None:
        return None
    available = ledger.balance(session, customer.id).available
    choices = affordable(program, customer, available, vouchers.sold_out(session, shop, program))
    if not choices:
        return None
    if choices[0].kind != "partner_voucher":
        return redeem(session, shop, customer, choices[0].name, source="auto", actor="auto")
    # The pool may empty between the look and the claim: a savepoint keeps that refusal from
    # undoing the order's own work in this transaction (nothing is redeemed, nothing taken).
    try:
        with session.begin_nested():
            return redeem(session, shop, customer, choices[0].name, source="auto", actor="auto")
    except VoucherSoldOutError:
        return None
