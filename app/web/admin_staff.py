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


# ---- program versions: compare and restore ------------------------------------------------

def _diff_lines(old: str, new: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """Return the unified diff of two texts as (kind, line): kind is add, remove, hunk or same."""
    import difflib

    kinds = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else \
            "remove" if line.startswith("-") else "same"
        kinds.append((kind, line))
    return kinds


@bp.get("/shops/<int:shop_id>/program/diff")
def program_diff(shop_id: int) -> Any:
    """Show what changed between two saved versions of the program (`a` and `b`, any order)."""
    import json

    from app.program import program_versions

    session = db.request_session()
    shop = shop_or_404(session, shop_id)
    rows = {row.version: row for row in program_versions(session, shop)}
    session.commit()
    a, b = _int_arg("a"), _int_arg("b")
    if a not in rows or b not in rows:
        abort(404)

    def pretty(version: int) -> str:
        return json.dumps(rows[version].document, indent=2, ensure_ascii=False, sort_keys=True)

    lines = _diff_lines(pretty(a), pretty(b), f"version {a}", f"version {b}")
    return render_template("admin/program_diff.html", shop=shop, a=rows[a], b=rows[b], lines=lines,
                           versions=sorted(rows, reverse=True))


@bp.post("/shops/<int:shop_id>/program/<int:version>/restore")
def program_restore(shop_id: int, version: int) -> Any:
    """Put an earlier version in force again, as a new version (the history stays as it was)."""
    from sqlalchemy.exc import IntegrityError

    from app.program import ProgramError, current_program, program_versions, save_program

    require_owner(shop_id)
    try:
        with db.session_scope() as session:
            shop = shop_or_404(session, shop_id)
            rows = {row.version: row for row in program_versions(session, shop)}
            if version not in rows:
                abort(404)
            in_force, _program = current_program(session, shop)
            saved = save_program(session, shop, rows[version].document, created_by=current_user.email).version
            audit(session, shop_id=shop.id, action="program.restore", subject=f"program of shop {shop.id}",
                  before={"version": in_force}, after={"version": saved, "restored": version})
    except ProgramError as exc:
        # A version saved under an older schema may not validate any more: say so, change nothing.
        from app.web import program_errors

        flash(_("Version %(version)s cannot be restored as it is: %(error)s", version=version,
                error=program_errors.summary(exc)), "error")
        return redirect(url_for("admin.program_version", shop_id=shop_id, version=version))
    except IntegrityError:
        flash(_("Another version was saved at the same moment; nothing was restored. Try again."), "error")
        return redirect(url_for("admin.program", shop_id=shop_id))
    logger.info("program version restored", extra={"shop": shop_id, "version": saved, "staff": current_user.staff_id})
    flash(_("Version %(old)s is in force again, as version %(new)s.", old=version, new=saved), "success")
    return redirect(url_for("admin.program", shop_id=shop_id))


# ---- exports ------------------------------------------------------------------------------

def _csv_response(filename: str, header: tuple[str, ...], rows: Any) -> Response:
    """Stream `rows` as CSV (UTF-8 with a byte-order mark, so spreadsheet programs read the umlauts)."""
    import csv
    import io

    from flask import stream_with_context

    from app.audit import safe_cell

    def generate() -> Any:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        yield "\ufeff" + out.getvalue()
        for row in rows:
            out.seek(0)
            out.truncate()
            writer.writerow([safe_cell(v) for v in row])
            yield out.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/shops/<int:shop_id>/exports")
def exports(shop_id: int) -> Any:
    """The shop's exports: customers with balances, and the ledger for a period."""
    require_owner(shop_id)
    session = db.request_session()
    shop = shop_or_404(session, shop_id)
    session.commit()
    return render_template("admin/exports.html", shop=shop)


@bp.get("/shops/<int:shop_id>/exports/customers.csv")
def export_customers(shop_id: int) -> Any:
    """Every customer of the shop with balances, tier and consent, as CSV (owners; audited)."""
    from app.loyalty import support

    require_owner(shop_id)
    with db.session_scope() as session:
        shop = shop_or_404(session, shop_id)
        zone, domain = shop.timezone, shop.domain
        audit(session, shop_id=shop_id, action="export.customers", subject=f"shop {shop_id}")
    reader = db.new_session()

    def rows() -> Any:
        try:
            yield from support.customer_export_rows(reader, shop_id, zone)
        finally:
            reader.rollback()
            reader.close()

    return _csv_response(f"customers-{_slug(domain)}.csv", support.CUSTOMER_CSV_COLUMNS, rows())


def _slug(domain: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.-]+", "-", domain.split("://")[-1]).strip("-")


@bp.get("/shops/<int:shop_id>/exports/ledger.csv")
def export_ledger(shop_id: int) -> Any:
    """The shop's ledger between two days (from, to: YYYY-MM-DD, both included, in the shop's
    zone) as CSV (owners; audited)."""
    from datetime import date, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from flask import g

    from app.loyalty import support

    require_owner(shop_id)
    with db.session_scope() as session:
        shop = shop_or_404(session, shop_id)
        zone, domain = shop.timezone, shop.domain
    try:
        first = date.fromisoformat(request.args.get("from", ""))
        last = date.fromisoformat(request.args.get("to", ""))
    except ValueError:
        flash(_("Give the period as two dates (from and to)."), "error")
        return redirect(url_for("admin.exports", shop_id=shop_id))
    if last < first:
        flash(_("The period ends before it starts."), "error")
        return redirect(url_for("admin.exports", shop_id=shop_id))
    tz = ZoneInfo(zone)
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tz)
    with db.session_scope() as session:
        audit(session, shop_id=shop_id, action="export.ledger", subject=f"shop {shop_id}",
              after={"from": first.isoformat(), "to": last.isoformat()})
    language = g.admin_language if g.admin_language != "en" else None
    reader = db.new_session()

    def rows() -> Any:
        try:
            yield from support.ledger_export_rows(reader, shop_id, start, end, zone, language)
        finally:
            reader.rollback()
            reader.close()

    return _csv_response(f"ledger-{_slug(domain)}-{first}-{last}.csv", support.LEDGER_CSV_COLUMNS, rows())
