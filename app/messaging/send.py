"""Sending e-mail: build a MIME message, hand it to SMTP or write it to an outbox folder.

No Flask here: jobs send mail without an app context. `mailer_from_config(cfg)` reads the
`SMTP_*`, `OUTBOX_PATH` settings of `app.config.settings()`; with `SMTP_HOST` unset every message is
written as an `.eml` file that a person can open in a mail client (development, demos).

Failures are raised, never swallowed (a job's retry policy decides what happens next):
- `TransientMailError`: retrying may help (connection refused or timed out, the server hung up,
  any SMTP 4xx reply, the outbox folder could not be written).
- `PermanentMailError`: retrying the same message cannot help (SMTP 5xx such as a refused
  recipient or failed authentication, the server lacks a feature we need, an untrusted TLS
  certificate).

Exception messages and log lines carry SMTP codes and the Message-ID, never addresses or
passwords: e-mail addresses in a server's reply are replaced by "[address]".
"""

from __future__ import annotations

import email.policy
import logging
import os
import re
import secrets
import smtplib
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from app.telemetry import EMAILS

logger = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "ssl", "none")

# Headers build_email() sets itself; extra headers may not replace them.
_RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "mime-version",
     "content-type", "content-transfer-encoding"}
)
_ADDRESS_RE = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")


class MailError(Exception):
    """Base class of every mail-sending error."""

    def __init__(self, message: str, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code


class TransientMailError(MailError):
    """Sending failed in a way that retrying later may fix (timeout, refused connection, 4xx)."""


class PermanentMailError(MailError):
    """The server refused the message or our credentials (5xx); retrying cannot fix it."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One e-mail to one recipient, with a text and an HTML part.

    `headers` are extra headers such as List-Unsubscribe; `message_id` is kept when given, so a
    retried job re-sends the same Message-ID.
    """

    to: str
    from_addr: str
    subject: str
    text: str
    html: str
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id: str | None = None
    reply_to: str | None = None


@runtime_checkable
class Mailer(Protocol):
    """Anything that can deliver an OutgoingMessage."""

    def send(self, msg: OutgoingMessage) -> str:
        """Deliver `msg` and return its Message-ID.

        Raises:
            TransientMailError: retrying may help.
            PermanentMailError: retrying cannot help.
        """
        ...


def format_address(display_name: str, addr_spec: str) -> str:
    """Return a correctly quoted address header value, e.g. '"Müller, Söhne" <shop@example.de>'."""
    return str(Address(display_name=display_name, addr_spec=addr_spec))


def list_unsubscribe_headers(url: str) -> dict[str, str]:
    """Return the List-Unsubscribe headers for a one-click HTTPS unsubscribe URL (RFC 8058)."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _domain_of(address: str) -> str:
    _, addr = parseaddr(address)
    domain = addr.rpartition("@")[2].strip()
    # make_msgid() without a domain calls socket.getfqdn(), a DNS lookup: avoid it.
    return domain or "localhost"


def build_email(msg: OutgoingMessage) -> EmailMessage:
    """Return a multipart/alternative message (text/plain, then text/html, both UTF-8).

    Raises:
        ValueError: an extra header would replace one set here, or a header has a line break.
    """
    for name in msg.headers:
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by build_email, not through headers")
    em = EmailMessage(policy=email.policy.default)
    em["From"] = msg.from_addr
    em["To"] = msg.to
    if msg.reply_to:
        em["Reply-To"] = msg.reply_to
    em["Subject"] = msg.subject
    em["Date"] = formatdate(usegmt=True)
    em["Message-ID"] = msg.message_id or make_msgid(domain=_domain_of(msg.from_addr))
    for name, value in msg.headers.items():
        em[name] = value
    # Quoted-printable keeps the message 7-bit clean: no reliance on the server's 8BITMIME, and
    # lines stay under SMTP's 998-octet limit even for one-line inlined HTML.
    em.set_content(msg.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    em.add_alternative(msg.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return em


def _redact(reply: bytes | str | None) -> str:
    if reply is None:
        return ""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return _ADDRESS_RE.sub("[address]", " ".join(text.split()))[:200]


def _by_code(what: str, code: int | None, reply: bytes | str | None) -> MailError:
    detail = f"{what} ({code} {_redact(reply)})".replace(" )", ")")
    if code is not None and 500 <= code < 600:
        return PermanentMailError(detail, smtp_code=code)
    return TransientMailError(detail, smtp_code=code)


def _outcome(error: MailError) -> str:
    return "permanent_error" if isinstance(error, PermanentMailError) else "transient_error"


def _translate(exc: BaseException) -> MailError:
    """Map an smtplib/ssl/OS exception to Transient- or PermanentMailError (no PII in the text)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # Every recipient refused; the dict maps address -> (code, reply). Keep the worst code.
        codes = [(c, r) for c, r in exc.recipients.values()]
        code, reply = max(codes, key=lambda cr: cr[0]) if codes else (None, None)
        return _by_code("recipient refused", code, reply)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _by_code("authentication failed", exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _by_code("sender refused", exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code("message refused", exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code("SMTP error", exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientMailError("SMTP server disconnected")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # e.g. STARTTLS or AUTH not offered, or SMTPUTF8 needed: a configuration problem.
        return PermanentMailError(f"SMTP server lacks a needed feature: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        # e.g. "No suitable authentication method found."
        return PermanentMailError(f"SMTP error: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentMailError(f"TLS certificate not trusted: {exc.verify_message}")
    if isinstance(exc, (TimeoutError, OSError)):
        return TransientMailError(f"SMTP connection failed: {type(exc).__name__} {exc}")
    raise TypeError(f"not a mail transport error: {type(exc).__name__}")


class SmtpMailer:
    """Send through an SMTP server, one fresh connection per message."""

    def __init__(
        self,
        host: str,
        port: int = 587,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 20,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(
                f"security must be one of {', '.join(SECURITY_MODES)}, got {security!r}"
            )
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self._tls_context = tls_context
        self._local_hostname = local_hostname

    def __repr__(self) -> str:  # no password in reprs or tracebacks
        return f"SmtpMailer(host={self.host!r}, port={self.port}, security={self.security!r})"

    def _tls(self) -> ssl.SSLContext:
        return self._tls_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self._local_hostname,
                timeout=self.timeout,
                context=self._tls(),
            )
        smtp = smtplib.SMTP(
            self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
        )
        if self.security == "starttls":
            try:
                smtp.starttls(context=self._tls())
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, msg: OutgoingMessage) -> str:
        """Deliver `msg` over SMTP and return its Message-ID.

        Raises:
            TransientMailError: connection refused or timed out, server hung up, 4xx reply.
            PermanentMailError: 5xx reply (refused recipient, failed login), missing feature.
        """
        em = build_email(msg)
        message_id = str(em["Message-ID"])
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(em)
        except (smtplib.SMTPException, OSError) as exc:
            error = _translate(exc)
            logger.warning(
                "mail not sent",
                extra={
                    "message_id": message_id,
                    "smtp_code": error.smtp_code,
                    "error_class": type(error).__name__,
                },
            )
            EMAILS.labels("smtp", _outcome(error)).inc()
            # `from None`: the original exception's text may name the recipient.
            raise error from None
        if refused:
            logger.warning(
                "mail refused for some recipients",
                extra={"message_id": message_id, "refused": len(refused)},
            )
        EMAILS.labels("smtp", "sent").inc()
        logger.info("mail sent", extra={"message_id": message_id, "transport": "smtp"})
        return message_id


class OutboxMailer:
    """Write each message as `<UTC timestamp>-<short id>.eml` into a folder (no SMTP needed)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"OutboxMailer(folder={str(self.folder)!r})"

    def send(self, msg: OutgoingMessage) -> str:
        """Write `msg` atomically (temp file, then rename) and return its Message-ID.

        Raises:
            TransientMailError: the folder or file could not be written.
        """
        em = build_email(msg)
        message_id = str(em["Message-ID"])
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{secrets.token_hex(4)}.eml"
        data = em.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".eml.tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            EMAILS.labels("outbox", "transient_error").inc()
            raise TransientMailError(f"outbox not writable: {type(exc).__name__}") from exc
        EMAILS.labels("outbox", "sent").inc()
        logger.info("mail written to outbox", extra={"message_id": message_id, "file": name})
        return message_id


def mailer_from_config(cfg: Mapping[str, Any]) -> Mailer:
    """Return the mailer the settings ask for: SMTP when SMTP_HOST is set, else the outbox."""
    host = cfg.get("SMTP_HOST")
    if not host:
        return OutboxMailer(cfg["OUTBOX_PATH"])
    return SmtpMailer(
        host=host,
        port=int(cfg.get("SMTP_PORT") or 587),
        security=cfg.get("SMTP_SECURITY") or "starttls",
        username=cfg.get("SMTP_USERNAME") or None,
        password=cfg.get("SMTP_PASSWORD") or None,
        timeout=float(cfg.get("SMTP_TIMEOUT") or 20),
    )
