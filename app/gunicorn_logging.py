"""gunicorn's access log without secrets: `gunicorn --logger-class app.gunicorn_logging.RedactingLogger`.

A customer's page (`/r/<token>`), an unsubscribe link (`/u/<token>`) and a double opt-in link
(`/consent/confirm/<token>`) carry their credential in the path, and query strings carry search
terms (e-mails), OAuth codes and HMACs. The access log keeps the route and drops those: every atom
gunicorn builds from the URL (`%(r)s`, `%(U)s`, `%(q)s`, `{raw_uri}e`, ...) and the Referer
(`%(f)s`, `{referer}i`) is rewritten before the line is formatted, whatever `access_log_format`
says. (A format string alone cannot do this: it only picks atoms.)
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
# A path segment that is a credential: the one right after these prefixes.
_TOKEN_PATH = re.compile(r"^(/(?:r|u|consent/confirm)/)[^/?#]+")
_URL_ENVIRON = ("RAW_URI", "PATH_INFO", "REQUEST_URI")


def redact_path(path: str) -> str:
    """Return `path` (with or without a query) with its token segment and its query replaced."""
    path, question, _query = path.partition("?")
    path = _TOKEN_PATH.sub(lambda m: m.group(1) + REDACTED, path)
    return f"{path}?{REDACTED}" if question else path


def redact_url(url: str) -> str:
    """Return a full URL (a Referer) redacted like a path: scheme and host stay."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)(.*)$", url)
    if match is None:
        return redact_path(url)
    return match.group(1) + redact_path(match.group(2) or "")


class RedactingLogger(Logger):
    """gunicorn's logger, with tokens in paths, query strings and Referers redacted from access lines."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        safe = dict(environ)
        for key in _URL_ENVIRON:
            if isinstance(safe.get(key), str):
                safe[key] = redact_path(safe[key])
        if safe.get("QUERY_STRING"):
            safe["QUERY_STRING"] = REDACTED
        if isinstance(safe.get("HTTP_REFERER"), str):
            safe["HTTP_REFERER"] = redact_url(safe["HTTP_REFERER"])
        atoms = super().atoms(resp, req, safe, request_time)
        if isinstance(atoms.get("{referer}i"), str):
            atoms["{referer}i"] = redact_url(atoms["{referer}i"])
        return atoms
