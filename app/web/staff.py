"""Staff accounts for the admin: creating them and checking their passwords (no Flask here).

Passwords are hashed with Argon2id (argon2-cffi defaults). Unknown e-mails still cost one hash
verification, so the response time does not tell which e-mails have an account.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.models import StaffSignIn, StaffUser, utcnow

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


def create_staff(session: Session, email: str, password: str) -> StaffUser:
    """Create a staff account, or set a new password when the e-mail already has one.

    Raises:
        ValueError: the e-mail is empty or the password is shorter than MIN_PASSWORD_LENGTH.
    """
    email = normalize_email(email)
    if not email or "@" not in email:
        raise ValueError("email must be an e-mail address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters long")
    password_hash = _hasher.hash(password)
    # The unique constraint on email decides between insert and update, so two concurrent calls
    # for one e-mail end with one row.
    stmt = dialect_insert(session, StaffUser.__table__).values(
        email=email, password_hash=password_hash, active=True, created_at=utcnow()
    )
    session.execute(
        stmt.on_conflict_do_update(index_elements=["email"], set_={"password_hash": password_hash})
    )
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
