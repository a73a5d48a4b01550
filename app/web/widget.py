"""The storefront widget's files: versioned URLs cached for a year, one short-lived entry point.

A merchant's theme loads `<PUBLIC_URL>/widget/stammkunde.js`, which answers with a redirect
(cached 5 minutes) to `/widget/<version>/stammkunde.js`; the version is a digest of the files, so
a release changes the URL and the versioned answer can be cached as immutable. The script loads
its stylesheet from the same versioned folder. Files are read once per process and served gzipped
to browsers that accept it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, redirect, request

WIDGET_DIR = Path(__file__).resolve().parent.parent / "static" / "widget"
FILES = {"stammkunde.js": "text/javascript; charset=utf-8", "stammkunde.css": "text/css; charset=utf-8"}
BUDGET_GZIPPED_BYTES = 10 * 1024
YEAR = 365 * 24 * 3600

bp = Blueprint("widget", __name__, url_prefix="/widget")


@dataclass(frozen=True)
class Asset:
    """One widget file as served: its bytes, gzipped bytes and content type."""

    body: bytes
    gzipped: bytes
    mimetype: str


@lru_cache(maxsize=1)
def _assets() -> tuple[str, dict[str, Asset]]:
    assets = {}
    digest = hashlib.sha256()
    for name, mimetype in FILES.items():
        body = (WIDGET_DIR / name).read_bytes()
        digest.update(name.encode() + b"\0" + body)
        assets[name] = Asset(body=body, gzipped=gzip.compress(body, compresslevel=9, mtime=0), mimetype=mimetype)
    return digest.hexdigest()[:12], assets


def version() -> str:
    """Return the widget's version: a digest of its files."""
    return _assets()[0]


def gzipped_size() -> int:
    """Return the bytes a browser downloads for the widget (script and stylesheet, gzipped)."""
    return sum(len(a.gzipped) for a in _assets()[1].values())


def asset_url(name: str) -> str:
    """Return the absolute, versioned URL of a widget file (for the theme line and the page)."""
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/widget/{version()}/{name}"


@bp.get("/<name>")
def latest(name: str) -> Response:
    """Redirect to the current version of a file (the URL a theme keeps), cached 5 minutes."""
    if name not in FILES:
        abort(404)
    response = redirect(f"/widget/{version()}/{name}", code=302)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/<ver>/<name>")
def versioned(ver: str, name: str) -> Response:
    """Serve a file of this version, immutable for a year (gzipped when the browser accepts it);
    an older version redirects to the current one."""
    if name not in FILES:
        abort(404)
    current, assets = _assets()
    if ver != current:
        return latest(name)
    asset = assets[name]
    gz = "gzip" in request.headers.get("Accept-Encoding", "")
    response = Response(asset.gzipped if gz else asset.body, mimetype=asset.mimetype)
    if gz:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def init_app(app: Flask) -> None:
    """Register the widget's routes."""
    app.register_blueprint(bp)
