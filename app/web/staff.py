"""Staff accounts for the admin: creating them, checking passwords and second factors, and
what each may do in which shop (no Flask here).

Passwords are hashed with Argon2id (argon2-cffi defaults). Unknown e-mails still cost one hash
verification, so the response time does not tell which e-mails have an account.

Roles are per shop (`staff_shop_roles`): an owner runs the program, the shop's staff and its
settings and reads the audit log; support views, adjusts points within the limit the owner set,
redeems, re-sends codes, bans and unsubscribes. A shop without a row for the user does not exist
for them. Administrators (`is_admin`, `flask staff create --admin`) own every shop.

The second factor is TOTP (RFC 6238) through pyotp, the maintained implementation authenticator
apps are tested against: 30-second steps, 6 digits, one step of clock drift either way. A code
is accepted once: the step it belongs to is stored, and an UPDATE that only moves it forward
decides between two requests racing with the same code.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from dataclasses import dataclass, field
from datetime import datetime

import pyotp
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app import crypto
from app.db import dialect_insert
from app.models import StaffRole, StaffShopRole, StaffSignIn, StaffUser, utcnow

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 12

_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Computed on first use, not at import; verified against when the e-mail is unknown.
    return _hasher.hash("stammkunde-dummy-password-for-timing")


def normalize_email(email: str) -> str:
    """Return the e-mail as stored: stripped and lower-cased."""
    return email.strip().lower()


def check_email(email: str) -> str:
    """Return the e-mail normalised.

    Raises:
        ValueError: it is not an e-mail address.
    """
    email = normalize_email(email)
    if not email or "@" not in email or len(email) > 320:
        raise ValueError("email must be an e-mail address")
    return email


def check_password(password: str) -> None:
    """Refuse a password that is too short.

    Raises:
        ValueError: shorter than MIN_PASSWORD_LENGTH.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters long")


def create_staff(session: Session, email: str, password: str, *, admin: bool = False) -> StaffUser:
    """Create a staff account, or set a new password when the e-mail already has one.

    `admin` makes the account an administrator (every shop, as owner); it never takes that away
    from an account that has it.

    Raises:
        ValueError: the e-mail is empty or the password is shorter than MIN_PASSWORD_LENGTH.
    """
    email = check_email(email)
    check_password(password)
    password_hash = _hasher.hash(password)
    # The unique constraint on email decides between insert and update, so two concurrent calls
    # for one e-mail end with one row.
    stmt = dialect_insert(session, StaffUser.__table__).values(
        email=email, password_hash=password_hash, active=True, created_at=utcnow(), is_admin=admin
    )
    changes: dict[str, object] = {"password_hash": password_hash}
    if admin:
        changes["is_admin"] = True
    session.execute(stmt.on_conflict_do_update(index_elements=["email"], set_=changes))
    return session.scalars(
        select(StaffUser).where(StaffUser.email == email).execution_options(populate_existing=True)
    ).one()


def authenticate(session: Session, email: str, password: str) -> StaffUser | None:
    """Return the active staff user with these credentials, or None; records the login time."""
    user = session.scalars(select(StaffUser).where(StaffUser.email == normalize_email(email))).first()
    stored = user.password_hash if user is not None else _dummy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    session.flush()
    return user


def verify_password(user: StaffUser, password: str) -> bool:
    """Return True when `password` is the user's (a re-check before a security change; records nothing)."""
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_sign_in(session: Session, user: StaffUser) -> str:
    """Record a new sign-in of `user` and return its random token (for the cookie; only its digest is stored)."""
    token = secrets.token_hex(32)
    session.add(StaffSignIn(token_digest=_digest(token), staff_id=user.id, created_at=utcnow()))
    session.flush()
    return token


def sign_in_is_open(session: Session, staff_id: int, token: str) -> bool:
    """Return True when `token` names a sign-in of staff `staff_id` that has not been closed."""
    row = session.get(StaffSignIn, _digest(token))
    return row is not None and row.staff_id == staff_id


def close_sign_in(session: Session, token: str) -> None:
    """Forget a sign-in: a cookie that names it signs nobody in any more."""
    session.execute(delete(StaffSignIn).where(StaffSignIn.token_digest == _digest(token)))


def invite_staff(session: Session, email: str) -> tuple[StaffUser, bool]:
    """Return the account of `email`, creating it without a usable password when there is none.

    The second value says whether it was created (its owner then sets a password through a
    link, `password_link_token`). The unique e-mail settles two owners inviting at once.

    Raises:
        ValueError: not an e-mail address.
    """
    email = check_email(email)
    # A random secret nobody knows: the account cannot sign in until a password is set.
    unusable = _hasher.hash(secrets.token_urlsafe(32))
    stmt = dialect_insert(session, StaffUser.__table__).values(
        email=email, password_hash=unusable, active=True, created_at=utcnow(), is_admin=False
    ).on_conflict_do_nothing(index_elements=["email"]).returning(StaffUser.__table__.c.id)
    created = session.execute(stmt).first() is not None
    user = session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
    return user, created


def set_password(session: Session, user: StaffUser, password: str) -> None:
    """Give `user` a new password (which also signs out every session of theirs).

    Raises:
        ValueError: the password is too short.
    """
    check_password(password)
    user.password_hash = _hasher.hash(password)
    session.execute(delete(StaffSignIn).where(StaffSignIn.staff_id == user.id))
    session.flush()


def password_digest(password_hash: str) -> str:
    """Return a short digest of a password hash: it changes whenever the password does."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


# ---- roles per shop ----------------------------------------------------------------------

@dataclass(frozen=True)
class ShopGrant:
    """What a staff user may do in one shop."""

    role: StaffRole
    adjust_limit: int | None  # None: no limit of the shop's own (owners, administrators)


@dataclass(frozen=True)
class Access:
    """Everything a staff user may see and do, loaded once per request."""

    is_admin: bool
    grants: dict[int, ShopGrant] = field(default_factory=dict)

    def shop_ids(self) -> frozenset[int] | None:
        """Return the ids of the shops this user sees, or None for every shop (administrators)."""
        return None if self.is_admin else frozenset(self.grants)

    def grant(self, shop_id: int) -> ShopGrant | None:
        """Return this user's grant in `shop_id`, or None when the shop does not exist for them."""
        if self.is_admin:
            return ShopGrant(StaffRole.OWNER, None)
        return self.grants.get(shop_id)

    def owns(self, shop_id: int) -> bool:
        """Return True when this user is an owner of `shop_id` (administrators own every shop)."""
        found = self.grant(shop_id)
        return found is not None and found.role == StaffRole.OWNER

    def owned_shop_ids(self) -> frozenset[int] | None:
        """Return the shops this user owns, or None for every shop (administrators)."""
        if self.is_admin:
            return None
        return frozenset(s for s, g in self.grants.items() if g.role == StaffRole.OWNER)


def access_of(session: Session, user: StaffUser) -> Access:
    """Return what `user` may see and do."""
    if user.is_admin:
        return Access(is_admin=True)
    rows = session.execute(
        select(StaffShopRole.shop_id, StaffShopRole.role, StaffShopRole.adjust_limit)
        .where(StaffShopRole.staff_id == user.id)
    ).all()
    return Access(
        is_admin=False,
        grants={
            shop_id: ShopGrant(role, None if role == StaffRole.OWNER else limit)
            for shop_id, role, limit in rows
        },
    )


def grant_role(session: Session, *, shop_id: int, staff_id: int, role: StaffRole, adjust_limit: int,
               granted_by: str) -> None:
    """Give a staff user `role` in a shop, or change the role and limit they have there.

    Raises:
        ValueError: a negative adjustment limit.
    """
    if adjust_limit < 0:
        raise ValueError("the adjustment limit must be 0 or more points")
    stmt = dialect_insert(session, StaffShopRole.__table__).values(
        staff_id=staff_id, shop_id=shop_id, role=role.value, adjust_limit=adjust_limit,
        granted_by=granted_by, created_at=utcnow(),
    )
    session.execute(stmt.on_conflict_do_update(
        index_elements=["staff_id", "shop_id"],
        set_={"role": role.value, "adjust_limit": adjust_limit, "granted_by": granted_by},
    ))


def revoke_role(session: Session, *, shop_id: int, staff_id: int) -> bool:
    """Take a staff user's access to a shop away; return False when they had none."""
    result = session.execute(
        delete(StaffShopRole).where(StaffShopRole.shop_id == shop_id, StaffShopRole.staff_id == staff_id)
    )
    return result.rowcount == 1


def shop_staff(session: Session, shop_id: int) -> list[tuple[StaffUser, StaffShopRole]]:
    """Return the staff users given access to a shop, with their role, by e-mail."""
    rows = session.execute(
        select(StaffUser, StaffShopRole)
        .join(StaffShopRole, StaffShopRole.staff_id == StaffUser.id)
        .where(StaffShopRole.shop_id == shop_id)
        .order_by(StaffUser.email)
    ).all()
    return [(user, role) for user, role in rows]


# ---- second factor (TOTP) ----------------------------------------------------------------

TOTP_ISSUER = "Stammkunde"


def new_totp_secret() -> str:
    """Return a fresh base32 TOTP secret (160 bits, as RFC 4226 recommends)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, email: str) -> str:
    """Return the otpauth:// URI an authenticator app reads (as a QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def matching_step(secret: str, code: str, now: datetime | None = None) -> int | None:
    """Return the time step `code` belongs to (now, or one step either side), or None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    moment = now or utcnow()
    step = totp.timecode(moment)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def has_totp(user: StaffUser) -> bool:
    """Return True when the user signs in with a second factor."""
    return user.totp_secret_enc is not None


def enable_totp(session: Session, user: StaffUser, secret: str, code: str, *, keys: str,
                now: datetime | None = None) -> bool:
    """Turn the second factor on with `secret` once `code` proves the app has it; False if not."""
    step = matching_step(secret, code, now)
    if step is None:
        return False
    user.totp_secret_enc = crypto.encrypt(keys, secret)
    user.totp_last_step = step
    session.flush()
    return True


def disable_totp(session: Session, user: StaffUser) -> None:
    """Turn the second factor off."""
    user.totp_secret_enc = None
    user.totp_last_step = None
    session.flush()


def check_totp(session: Session, user: StaffUser, code: str, *, keys: str, now: datetime | None = None) -> bool:
    """Return True when `code` is the user's current code and was not used before (uses it up)."""
    if user.totp_secret_enc is None:
        return False
    step = matching_step(crypto.decrypt(keys, user.totp_secret_enc), code, now)
    if step is None:
        return False
    # Only moves forward: of two requests with one code, the database lets one through.
    result = session.execute(
        update(StaffUser)
        .where(StaffUser.id == user.id,
               or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
