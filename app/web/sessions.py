"""Flask's cookie sessions, built only when a request carries a session cookie.

Flask's `SecureCookieSessionInterface.open_session` builds its signing serializer (which
serializes a test value once) on every request, cookie or not: about 0.25 ms of CPU. Most requests
here carry no session cookie (the app proxy and the widget's files, whose cookies Shopify strips
or the browser never sends), so they skip it. A request without a cookie gets the same empty
session Flask would give it; one with a cookie is read exactly as Flask reads it.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie sessions; the serializer is built only for a request with a cookie."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Return an empty session without touching the serializer when no cookie was sent."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
