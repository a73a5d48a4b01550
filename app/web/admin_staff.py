"""Owner work in the admin: who may do what in a shop (staff and their roles, the support
adjustment limit) and the audit log of every staff action, on a page and as CSV. Routes of the
"admin" blueprint (app.web.admin); support staff get 403 here, staff of other shops 404.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app import audit as audit_log
from app import db
from app.models import Shop, StaffAuditEntry, StaffRole, StaffShopRole, StaffUser
from app.web import staff
from app.web.access import audit, current_access, require_owner, shop_or_404
from app.web.admin import PAGE_SIZE, _int_arg, bp, status_text
from app.web.admin_account import password_link

logger = logging.getLogger(__name__)

DEFAULT_SUPPORT_LIMIT = 500


def _staff_page(shop_id: int, *, link: dict[str, str] | None = None, error: str | None = None,
                status: int = 200, form: dict[str, str] | None = None) -> Any:
    session = db.request_session()
    shop = shop_or_404(session, shop_id)
    members = staff.shop_staff(session, shop.id)
    session.commit()
    return render_template(
        "admin/staff.html", shop=shop, members=members, roles=[r.value for r in StaffRole], link=link,
        error=error, form=form or {}, default_limit=DEFAULT_SUPPORT_LIMIT,
    ), status


@bp.get("/shops/<int:shop_id>/staff")
def shop_staff(shop_id: int) -> Any:
    """List the shop's staff with their roles; owners add, change and remove them here."""
    require_owner(shop_id)
    return _staff_page(shop_id)


def _role_and_limit() -> tuple[StaffRole, int]:
    """Read role and adjustment limit from the form.

    Raises:
        ValueError: an unknown role or a limit that is not a whole number of 0 or more.
    """
    raw_role = request.form.get("role", "")
    if raw_role not in {r.value for r in StaffRole}:
        raise ValueError(_("choose the role owner or support"))
    raw_limit = request.form.get("adjust_limit", "").strip() or "0"
    if not raw_limit.isdigit():
        raise ValueError(_("the adjustment limit must be a whole number of points, 0 or more"))
    from app.loyalty.ledger import MAX_ADJUSTMENT

    limit = int(raw_limit)
    if limit > MAX_ADJUSTMENT:
        raise ValueError(_("the adjustment limit is at most %(limit)s points", limit=f"{MAX_ADJUSTMENT:_}".replace("_", " ")))
    return StaffRole(raw_role), limit


def _grant_snapshot(session: Any, shop_id: int, staff_id: int) -> dict[str, Any] | None:
    row = session.get(StaffShopRole, (staff_id, shop_id))
    return None if row is None else {"role": row.role.value, "adjust_limit": row.adjust_limit}


@bp.post("/shops/<int:shop_id>/staff")
def add_staff(shop_id: int) -> Any:
    """Give an e-mail a role in the shop (creating the account, with a set-password link), or
    change the role and limit of someone who has one."""
    require_owner(shop_id)
    form = {k: request.form.get(k, "") for k in ("email", "role", "adjust_limit")}
    try:
        role, limit = _role_and_limit()
        email = staff.check_email(form["email"])
    except ValueError as exc:  # check_email's text is English: say it in the admin's words
        if "e-mail" in str(exc):
            exc = ValueError(_("the e-mail is not an e-mail address"))
        return _staff_page(shop_id, error=_("Not saved: %(reason)s.", reason=exc), status=400, form=form)
    link = None
    if email == current_user.email:
        return _staff_page(shop_id, status=400, form=form, error=_("You cannot change your own role; ask another owner."))
    with db.session_scope() as session:
        shop_or_404(session, shop_id)
        user, created = staff.invite_staff(session, email)
        before = _grant_snapshot(session, shop_id, user.id)
        staff.grant_role(session, shop_id=shop_id, staff_id=user.id, role=role,
                         adjust_limit=0 if role == StaffRole.OWNER else limit, granted_by=current_user.email)
        after = _grant_snapshot(session, shop_id, user.id)
        audit(session, shop_id=shop_id, action="staff.grant", subject=f"staff {user.id} ({user.email})",
              before=before, after={**(after or {}), **({"account": "created"} if created else {})})
        if created:
            link = {"email": user.email, "url": password_link(user)}
    logger.info("staff role granted", extra={"shop": shop_id, "staff": current_user.staff_id})
    if link is not None:
        return _staff_page(shop_id, link=link)
    flash(_("%(email)s is now %(role)s of this shop.", email=email, role=status_text(role.value)), "success")
    return redirect(url_for("admin.shop_staff", shop_id=shop_id))


def _member(session: Any, shop_id: int, staff_id: int) -> StaffUser:
    user = session.get(StaffUser, staff_id)
    if user is None or session.get(StaffShopRole, (staff_id, shop_id)) is None:
        abort(404)
    return user


@bp.post("/shops/<int:shop_id>/staff/<int:staff_id>/remove")
def remove_staff(shop_id: int, staff_id: int) -> Any:
    """Take a staff user's access to the shop away (their other shops stay)."""
    require_owner(shop_id)
    if staff_id == current_user.staff_id:
        flash(_("You cannot remove yourself; ask another owner."), "error")
        return redirect(url_for("admin.shop_staff", shop_id=shop_id))
    with db.session_scope() as session:
        user = _member(session, shop_id, staff_id)
        before = _grant_snapshot(session, shop_id, staff_id)
        staff.revoke_role(session, shop_id=shop_id, staff_id=staff_id)
        audit(session, shop_id=shop_id, action="staff.revoke", subject=f"staff {user.id} ({user.email})",
              before=before, after=None)
        email = user.email
    flash(_("%(email)s no longer has access to this shop.", email=email), "success")
    return redirect(url_for("admin.shop_staff", shop_id=shop_id))


@bp.post("/shops/<int:shop_id>/staff/<int:staff_id>/link")
def new_password_link(shop_id: int, staff_id: int) -> Any:
    """Make a new set-password link for a member who has never signed in.

    Only for accounts that no other owner or administrator has a say over: not administrators,
    and given no shop this owner does not own (else the link would take over someone's account).
    """
    require_owner(shop_id)
    with db.session_scope() as session:
        user = _member(session, shop_id, staff_id)
        their_shops = set(session.scalars(select(StaffShopRole.shop_id).where(StaffShopRole.staff_id == staff_id)))
        owned = current_access().owned_shop_ids()
        refused = user.is_admin or user.last_login_at is not None or (owned is not None and not their_shops <= owned)
        email = user.email
        link = None
        if not refused:
            audit(session, shop_id=shop_id, action="staff.password_link", subject=f"staff {user.id} ({user.email})")
            link = {"email": user.email, "url": password_link(user)}
    if link is None:
        return _staff_page(shop_id, status=403, error=_(
            "No link made: %(email)s has signed in before or also works for shops you do not own. "
            "They can ask an administrator to set a password (flask staff create).", email=email))
    return _staff_page(shop_id, link=link)


# ---- the audit log ------------------------------------------------------------------------

def _audit_scope() -> tuple[frozenset[int] | None, int | None, list[Shop]]:
    """Return (shops whose entries the user may read, the chosen shop, the shops to choose from)."""
    access = current_access()
    shop_id = _int_arg("shop")
    if shop_id is not None:
        require_owner(shop_id)
    owned = access.owned_shop_ids()
    session = db.request_session()
    query = select(Shop).order_by(Shop.platform, Shop.domain)
    if owned is not None:
        query = query.where(Shop.id.in_(owned))
    shops = list(session.scalars(query))
    session.commit()
    if owned is not None and not owned:
        abort(403)
    return owned, shop_id, shops


@bp.get("/audit")
def audit_page() -> Any:
    """The audit log of the shops the user owns (administrators: everything), newest first."""
    owned, shop_id, shops = _audit_scope()
    before = _int_arg("before")
    session = db.request_session()
    query = audit_log.entries_query(owned, shop_id)
    if before is not None:
        query = query.where(StaffAuditEntry.id < before)
    rows = list(session.scalars(query.limit(PAGE_SIZE + 1)))
    session.commit()
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    older = url_for("admin.audit_page", shop=shop_id, before=rows[-1].id) if more else None
    shop_names = {s.id: s.name or s.domain for s in shops}
    shop_zones = {s.id: s.timezone for s in shops}
    return render_template("admin/audit.html", rows=rows, shops=shops, shop_id=shop_id, older=older,
                           shop_names=shop_names, shop_zones=shop_zones)


@bp.get("/audit.csv")
def audit_csv() -> Any:
    """The same entries as CSV, all of them (for the shop chosen, else every shop the user owns)."""
    owned, shop_id, _shops = _audit_scope()
    session = db.request_session()
    body = audit_log.to_csv(session.scalars(audit_log.entries_query(owned, shop_id)))
    session.commit()
    audit_log_name = f"audit-shop-{shop_id}.csv" if shop_id is not None else "audit.csv"
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{audit_log_name}"'})
