"""Owner work in the admin: partner voucher pools (create one, upload a partner's codes as CSV,
see how many are left). Routes of the "admin" blueprint (app.web.admin); support staff get 403
here, staff of other shops 404. The domain is app.loyalty.vouchers; every change is audit-logged
in the same transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app import db
from app.loyalty import vouchers
from app.models import VoucherPool, utcnow
from app.program import current_program
from app.web.access import audit, require_owner, shop_or_404
from app.web.admin import bp

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # 200 000 codes of 64 characters with an expiry fit
SHOWN_PROBLEMS = 100  # rows listed on the page; the rest are counted


def allow_large_upload() -> None:
    """Let an upload of codes be up to MAX_UPLOAD_BYTES (other requests keep MAX_CONTENT_LENGTH).

    Registered by app.web.admin.init_app as the app's first before-request function, so it runs
    before CSRF protection reads the form.
    """
    if request.endpoint == "admin.upload_voucher_codes":
        request.max_content_length = MAX_UPLOAD_BYTES


def _page(shop_id: int, *, status: int = 200, errors: list[vouchers.RowProblem] | None = None,
          error_count: int = 0, skipped: list[vouchers.RowProblem] | None = None, skipped_count: int = 0,
          upload_pool: int | None = None, form: dict[str, str] | None = None, error: str | None = None) -> Any:
    session = db.request_session()
    shop = shop_or_404(session, shop_id)
    _, program = current_program(session, shop)
    pools = vouchers.pool_views(session, shop, program)
    low_pools = [p for p in pools if p.rewards and p.low_stock is not None and p.state != "ok"]
    session.commit()
    return render_template(
        "admin/vouchers.html", shop=shop, pools=pools, low_pools=low_pools, errors=errors or [],
        error_count=error_count, skipped=skipped or [], skipped_count=skipped_count, upload_pool=upload_pool,
        form=form or {}, error=error, max_rows=vouchers.MAX_ROWS, why=_why,
    ), status


def _why(problem: vouchers.RowProblem) -> str:
    """Say why a row was not stored, in the staff user's language."""
    return _(vouchers.TEXTS[problem.kind], **problem.params)


@bp.get("/shops/<int:shop_id>/vouchers")
def voucher_pools(shop_id: int) -> Any:
    """List the shop's voucher pools with the codes left, claimed and expired, and warn about
    pools a reward offers that are empty or running low."""
    require_owner(shop_id)
    return _page(shop_id)


@bp.post("/shops/<int:shop_id>/vouchers")
def create_voucher_pool(shop_id: int) -> Any:
    """Create a pool (a name a partner_voucher reward names, and optionally the partner)."""
    require_owner(shop_id)
    form = {k: request.form.get(k, "").strip() for k in ("name", "partner")}
    if not form["name"] or len(form["name"]) > 80:
        return _page(shop_id, status=422, form=form, error=_("Give the pool a name of 1 to 80 characters."))
    if len(form["partner"]) > 120:
        return _page(shop_id, status=422, form=form, error=_("The partner's name is at most 120 characters."))
    with db.session_scope() as session:
        shop = shop_or_404(session, shop_id)
        pool = vouchers.create_pool(session, shop, form["name"], partner=form["partner"] or None,
                                    created_by=current_user.email)
        if pool is not None:
            audit(session, shop_id=shop.id, action="vouchers.pool_create", subject=f"voucher pool {pool.id}",
                  before=None, after={"name": pool.name, "partner": pool.partner})
    if pool is None:
        return _page(shop_id, status=409, form=form,
                     error=_("There is a pool called %(name)s already; upload more codes into it below.",
                             name=form["name"]))
    logger.info("voucher pool created", extra={"shop": shop_id, "pool": pool.id, "staff": current_user.staff_id})
    flash(_("Pool %(name)s created. Upload the partner's codes, then offer it as a reward of the kind "
            "\"Partner voucher\" in the program.", name=form["name"]), "success")
    return redirect(url_for("admin.voucher_pools", shop_id=shop_id) + f"#pool-{pool.id}")


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")  # older spreadsheet programs save "ANSI"


@bp.post("/shops/<int:shop_id>/vouchers/<int:pool_id>/upload")
def upload_voucher_codes(shop_id: int, pool_id: int) -> Any:
    """Append a partner's CSV of codes to the pool: all readable rows or nothing (every bad row
    listed by line); codes given twice or held already are skipped and listed."""
    require_owner(shop_id)
    session = db.request_session()
    shop = shop_or_404(session, shop_id)
    pool = session.get(VoucherPool, pool_id)
    if pool is None or pool.shop_id != shop.id:
        abort(404)
    timezone, pool_name = shop.timezone, pool.name
    session.commit()
    upload = request.files.get("file")
    raw, filename = b"", ""
    if upload is not None:
        with upload.stream:  # a large file is spooled to disk: close it now
            raw, filename = upload.read(), (upload.filename or "")[:200]
    if not raw:
        return _page(shop_id, status=422, upload_pool=pool_id, error=_("Choose a CSV file with the codes."))
    try:
        read = vouchers.read_codes(_decoded(raw), timezone=timezone, now=utcnow())
    except vouchers.VoucherUploadError as exc:
        return _page(shop_id, status=422, upload_pool=pool_id,
                     error=_("Nothing was imported: %(reason)s.", reason=_(vouchers.TEXTS[exc.kind], **exc.params)))
    if read.errors:
        logger.info("voucher upload refused", extra={"shop": shop_id, "pool": pool_id, "bad_rows": len(read.errors)})
        return _page(shop_id, status=422, upload_pool=pool_id, errors=read.errors[:SHOWN_PROBLEMS],
                     error_count=len(read.errors),
                     error=_("Nothing was imported: %(count)s rows cannot be read. Correct them and upload the "
                             "file again.", count=len(read.errors)))
    with db.session_scope() as write:
        target = write.get(VoucherPool, pool_id)
        assert target is not None
        result = vouchers.add_codes(write, target, read.rows)
        skipped = sorted([*read.repeated, *result.skipped], key=lambda p: p.line)
        audit(write, shop_id=shop_id, action="vouchers.upload", subject=f"voucher pool {pool_id}",
              before=None, after={"pool": pool_name, "file": filename,
                                  "added": result.added, "skipped": len(skipped)})
    flash(_("%(added)s codes added to %(pool)s; %(skipped)s skipped (listed below).", added=result.added,
            pool=pool_name, skipped=len(skipped)) if skipped else
          _("%(added)s codes added to %(pool)s.", added=result.added, pool=pool_name), "success")
    return _page(shop_id, skipped=skipped[:SHOWN_PROBLEMS], skipped_count=len(skipped), upload_pool=pool_id)

