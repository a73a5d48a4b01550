"""Who is signed in to the admin and what they may see and do (Flask side of app.web.staff).

`StaffSession` is the signed-in user as Flask-Login keeps it, with their `Access` (roles per
shop) loaded once per request. Views ask:
- `shop_or_404(session, shop_id)`: the shop, or 404 when this user was not given it (a shop of
  someone else does not exist for them, so ids of other shops tell nothing);
- `require_owner(shop_id)`: 403 for support staff on owner work (program, staff, audit log);
- `only_visible(query, column)`: a list narrowed to the user's shops;
- `audit(...)`: an audit-log entry by the current user, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_login import LoginManager, UserMixin, current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audit as audit_log
from app import db
from app.models import Shop, StaffUser
from app.web import staff
from app.web.staff import Access

login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Please sign in to see this page."
login_manager.login_message_category = "info"


class StaffSession(UserMixin):
    """The signed-in staff user as Flask-Login sees it (detached from any DB session).

    The cookie's id names the staff user, a digest of the password hash (a new password signs
    out every session of that account) and a sign-in the server keeps (`staff_sign_ins`):
    signing out deletes it, so a copy of the cookie signs nobody in.
    """

    def __init__(self, user: StaffUser, sign_in: str, access: Access, shop_languages: frozenset[str] = frozenset()) -> None:
        self.staff_id = user.id
        self.email = user.email
        self.active = user.active
        self.language = user.language
        self.has_totp = staff.has_totp(user)
        self.token = staff.password_digest(user.password_hash)
        self.sign_in = sign_in
        self.access = access
        # The admin's language when the user chose none: German for German shops (app.web.admin).
        self.shop_languages = shop_languages

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return f"{self.staff_id}-{self.token}-{self.sign_in}"


@login_manager.user_loader
def _load_staff(session_id: str) -> StaffSession | None:
    staff_id, _, rest = session_id.partition("-")
    token, _, sign_in = rest.partition("-")
    if not staff_id.isdigit() or not sign_in:
        return None
    session = db.request_session()
    user = session.get(StaffUser, int(staff_id))
    staff_session = None
    if (user is not None and user.active and staff.password_digest(user.password_hash) == token
            and staff.sign_in_is_open(session, user.id, sign_in)):
        access = staff.access_of(session, user)
        staff_session = StaffSession(user, sign_in, access, shop_languages(session, access))
    # End the read at once: on SQLite every transaction holds the write lock (BEGIN IMMEDIATE),
    # and views such as replay write through their own session.
    session.rollback()
    return staff_session


def shop_languages(session: Session, access: Access) -> frozenset[str]:
    """Return the languages of the shops `access` sees ("de", "en", ...)."""
    query = select(Shop.language).distinct()
    ids = access.shop_ids()
    if ids is not None:
        query = query.where(Shop.id.in_(ids))
    return frozenset((language or "")[:2].lower() for language in session.scalars(query))


def current_access() -> Access:
    """Return the signed-in user's access (views run only for signed-in users)."""
    return current_user.access


def visible_shop_ids() -> frozenset[int] | None:
    """Return the shops the user sees, or None for every shop."""
    return current_access().shop_ids()


def can_see(shop_id: int | None) -> bool:
    """Return True when the user was given this shop."""
    return shop_id is not None and current_access().grant(shop_id) is not None


def shop_or_404(session: Session, shop_id: int) -> Shop:
    """Return the shop when the user was given it; 404 when it does not exist or is not theirs."""
    if not can_see(shop_id):
        abort(404)
    shop = session.get(Shop, shop_id)
    if shop is None:
        abort(404)
    return shop


def require_owner(shop_id: int) -> None:
    """Abort with 404 for a shop the user was not given, 403 when they are not its owner."""
    if not can_see(shop_id):
        abort(404)
    if not current_access().owns(shop_id):
        abort(403)


def only_visible(query: Any, column: Any) -> Any:
    """Return `query` narrowed to rows whose `column` (a shop id) is one of the user's shops."""
    ids = visible_shop_ids()
    return query if ids is None else query.where(column.in_(ids))


def audit(session: Session, *, shop_id: int | None, action: str, subject: str,
          before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    """Record an action of the signed-in user in the audit log (in `session`'s transaction)."""
    audit_log.record(
        session, shop_id=shop_id, staff_id=current_user.staff_id, staff_email=current_user.email,
        action=action, subject=subject, before=before, after=after,
    )
