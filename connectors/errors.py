"""One small exception hierarchy for everything a connector can raise."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of every connector error."""


class MissingSignatureError(ConnectorError):
    """The request carries no signature header (answer 400)."""


class InvalidSignatureError(ConnectorError):
    """The signature does not match the body under any accepted secret (answer 401)."""


class MalformedPayloadError(ConnectorError):
    """A field we rely on is missing or has the wrong type; the message names topic and field."""


class UnsupportedTopicError(ConnectorError):
    """The topic is not one this connector parses."""


class TransientError(ConnectorError):
    """A platform call failed in a way that retrying may fix (timeout, 5xx)."""


class RateLimitedError(TransientError):
    """The platform asked us to slow down; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """The platform refused the call and retrying cannot fix it (most 4xx, userErrors)."""


class AuthorizationExpiredError(PermanentError):
    """The shop's grant is expired or revoked: only the merchant installing again can renew it."""


class UnauthorizedError(PermanentError):
    """The platform refused the credentials (HTTP 401): an expired token may be refreshed once."""
