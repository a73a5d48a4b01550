"""Sign-in throttling for the admin, per account and per client address (no Flask here).

Every failed sign-in (wrong password, or a wrong second-factor code) is one row per scope in
`staff_login_failures`, keyed by an HMAC of the normalised e-mail or of the address, so the table
holds no personal data in clear. While an account has ACCOUNT_LIMIT failures within WINDOW, or an
address ADDRESS_LIMIT, sign-ins for it are refused before any password is checked, with the time
they may try again. The limit per account stops guessing one password from many addresses; the
one per address stops trying many accounts from one address. The database holds the counts, so
every web process and server shares them, and a restart forgets nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import StaffLoginFailure, utcnow

WINDOW = timedelta(minutes=15)
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
ACCOUNT, ADDRESS = "account", "address"


@dataclass(frozen=True)
class Keys:
    """The two keys a sign-in attempt is counted under."""

    account: str
    address: str


def keys_for(secret: str, email: str, address: str) -> Keys:
    """Return the keys of an attempt: HMAC-SHA256 (with the app's secret) of e-mail and address."""

    def digest(scope: str, value: str) -> str:
        return hmac.new(secret.encode(), f"{scope}:{value}".encode(), hashlib.sha256).hexdigest()

    return Keys(account=digest(ACCOUNT, email.strip().lower()), address=digest(ADDRESS, address or "-"))


def _blocked_until(session: Session, scope: str, key: str, limit: int, now: datetime) -> datetime | None:
    # The newest `limit` failures within the window decide: attempts are allowed again when the
    # oldest of them leaves the window.
    newest = session.scalars(
        select(StaffLoginFailure.failed_at)
        .where(StaffLoginFailure.scope == scope, StaffLoginFailure.key_digest == key,
               StaffLoginFailure.failed_at > now - WINDOW)
        .order_by(StaffLoginFailure.failed_at.desc())
        .limit(limit)
    ).all()
    return newest[-1] + WINDOW if len(newest) >= limit else None


def blocked_until(session: Session, keys: Keys, now: datetime | None = None) -> datetime | None:
    """Return until when sign-ins with these keys are refused, or None when they are allowed."""
    now = now or utcnow()
    found = [t for t in (_blocked_until(session, ACCOUNT, keys.account, ACCOUNT_LIMIT, now),
                         _blocked_until(session, ADDRESS, keys.address, ADDRESS_LIMIT, now)) if t]
    return max(found) if found else None


def record_failure(session: Session, keys: Keys, now: datetime | None = None) -> None:
    """Count a failed attempt under both keys, and forget their failures older than the window."""
    now = now or utcnow()
    for scope, key in ((ACCOUNT, keys.account), (ADDRESS, keys.address)):
        session.execute(delete(StaffLoginFailure).where(
            StaffLoginFailure.scope == scope, StaffLoginFailure.key_digest == key,
            StaffLoginFailure.failed_at <= now - WINDOW,
        ))
        session.add(StaffLoginFailure(scope=scope, key_digest=key, failed_at=now))
    session.flush()


def clear_account(session: Session, keys: Keys) -> None:
    """Forget the account's failures after a complete sign-in (the address keeps its count)."""
    session.execute(delete(StaffLoginFailure).where(
        StaffLoginFailure.scope == ACCOUNT, StaffLoginFailure.key_digest == keys.account))
