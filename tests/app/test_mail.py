"""Sending e-mail: MIME building, a real local SMTP server (aiosmtpd) and the outbox folder.

The SMTP tests talk to aiosmtpd's `Controller` on 127.0.0.1 (its own thread and event loop),
stopped in teardown. STARTTLS, implicit TLS and AUTH use a self-signed certificate made here.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.messaging.send import (
    Mailer,
    OutboxMailer,
    OutgoingMessage,
    PermanentMailError,
    SmtpMailer,
    TransientMailError,
    build_email,
    format_address,
    list_unsubscribe_headers,
    mailer_from_config,
)
from tests.conftest import free_port

RECIPIENT = "kundin@example.test"
SENDER = "no-reply@stammkunde.example"
SUBJECT = "Ihr Warenkorb bei Bäckerei Müller: 25,00 € – schön, dass Sie da sind"
UNSUBSCRIBE = "https://stammkunde.example/u/abc123"
USER, PASSWORD = "shop-mailer", "richtiges-passwort"


def _message(**overrides: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "to": RECIPIENT,
        "from_addr": format_address("Bäckerei Müller, Söhne", SENDER),
        "subject": SUBJECT,
        "text": "Hallo Jürgen,\n\nIhr Warenkorb über 25,00 € wartet.\n",
        "html": "<p>Hallo Jürgen,</p><p>Ihr Warenkorb über <b>25,00 €</b> wartet.</p>",
        "headers": list_unsubscribe_headers(UNSUBSCRIBE),
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)


def _parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


class Collector:
    """An aiosmtpd handler that keeps every accepted envelope; replies can be forced per stage."""

    def __init__(self, rcpt_reply: str | None = None, data_reply: str | None = None) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (cert and key as PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"cert": cert_path, "key": key_path}


def _server_tls(certificate: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate["cert"], certificate["key"])
    return context


def _client_tls(certificate: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate["cert"]))


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Collector, int]]]:
    """Start real aiosmtpd servers on 127.0.0.1; every one is stopped after the test."""
    controllers: list[Controller] = []

    def start(handler: Collector | None = None, **smtp_kwargs: Any) -> tuple[Collector, int]:
        handler = handler or Collector()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_kwargs)
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


def test_build_email_has_text_then_html_and_encoded_headers() -> None:
    # given
    msg = _message(message_id="<retry-1@stammkunde.example>", reply_to="laden@example.test")

    # when
    built = build_email(msg)

    # then
    assert built.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in built.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in built.iter_parts())
    assert built["Message-ID"] == "<retry-1@stammkunde.example>"
    assert built["Reply-To"] == "laden@example.test"
    assert built["Date"]
    raw = built.as_bytes()
    assert raw.isascii()  # umlauts and € are RFC 2047 / transfer encoded
    reparsed = _parse(raw)
    assert reparsed["Subject"] == SUBJECT
    assert reparsed["From"].addresses[0].display_name == "Bäckerei Müller, Söhne"
    assert reparsed["From"].addresses[0].addr_spec == SENDER
    assert reparsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert reparsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_build_email_makes_a_message_id_on_the_sender_domain() -> None:
    # given
    msg = _message()

    # when
    first, second = build_email(msg), build_email(msg)

    # then
    assert re.fullmatch(r"<[^@<>]+@stammkunde\.example>", first["Message-ID"])
    assert first["Message-ID"] != second["Message-ID"]


@pytest.mark.parametrize(
    ("_case", "headers"),
    [
        ("message id through headers", {"Message-ID": "<x@y>"}),
        ("subject through headers", {"subject": "other"}),
    ],
)
def test_build_email_refuses_headers_it_sets_itself(_case: str, headers: dict[str, str]) -> None:
    # given
    msg = _message(headers=headers)

    # when / then
    with pytest.raises(ValueError):
        build_email(msg)


def test_smtp_delivers_both_parts_and_headers(
    smtp_server: Callable[..., tuple[Collector, int]],
) -> None:
    # given
    handler, port = smtp_server()
    mailer = SmtpMailer("127.0.0.1", port, security="none", timeout=5)
    msg = _message(message_id="<cart-42-step-1@stammkunde.example>")

    # when
    message_id = mailer.send(msg)

    # then
    assert message_id == "<cart-42-step-1@stammkunde.example>"
    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == [RECIPIENT]
    assert isinstance(envelope.content, bytes)
    received = _parse(envelope.content)
    assert received["Subject"] == SUBJECT
    assert received["Message-ID"] == message_id
    assert received["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # SMTP carries CRLF line ends; the text itself arrives unchanged.
    assert (
        text.get_content().replace("\r\n", "\n")
        == "Hallo Jürgen,\n\nIhr Warenkorb über 25,00 € wartet.\n"
    )
    assert "<b>25,00 €</b>" in html.get_content()


def test_smtp_retry_resends_the_same_message_id(
    smtp_server: Callable[..., tuple[Collector, int]],
) -> None:
    # given
    handler, port = smtp_server()
    mailer = SmtpMailer("127.0.0.1", port, security="none", timeout=5)
    msg = _message(message_id="<winback-7@stammkunde.example>")

    # when
    ids = [mailer.send(msg), mailer.send(msg)]

    # then
    received = [_parse(e.content)["Message-ID"] for e in handler.envelopes]
    assert ids == received == ["<winback-7@stammkunde.example>"] * 2


def test_smtp_starttls_with_login(
    smtp_server: Callable[..., tuple[Collector, int]], certificate: dict[str, Path]
) -> None:
    # given
    handler, port = smtp_server(
        tls_context=_server_tls(certificate),
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    mailer = SmtpMailer(
        "127.0.0.1",
        port,
        security="starttls",
        username=USER,
        password=PASSWORD,
        timeout=5,
        tls_context=_client_tls(certificate),
    )

    # when
    message_id = mailer.send(_message())

    # then
    assert [_parse(e.content)["Message-ID"] for e in handler.envelopes] == [message_id]


def test_smtp_wrong_password_is_permanent(
    smtp_server: Callable[..., tuple[Collector, int]], certificate: dict[str, Path]
) -> None:
    # given
    handler, port = smtp_server(
        tls_context=_server_tls(certificate),
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    mailer = SmtpMailer(
        "127.0.0.1",
        port,
        security="starttls",
        username=USER,
        password="falsch",
        timeout=5,
        tls_context=_client_tls(certificate),
    )

    # when
    with pytest.raises(PermanentMailError) as caught:
        mailer.send(_message())

    # then
    assert caught.value.smtp_code == 535
    assert "falsch" not in str(caught.value)
    assert handler.envelopes == []


def test_smtp_implicit_tls(
    smtp_server: Callable[..., tuple[Collector, int]], certificate: dict[str, Path]
) -> None:
    # given
    handler, port = smtp_server(ssl_context=_server_tls(certificate))
    mailer = SmtpMailer(
        "127.0.0.1", port, security="ssl", timeout=5, tls_context=_client_tls(certificate)
    )

    # when
    message_id = mailer.send(_message())

    # then
    assert [_parse(e.content)["Message-ID"] for e in handler.envelopes] == [message_id]


def test_smtp_untrusted_certificate_is_permanent(
    smtp_server: Callable[..., tuple[Collector, int]], certificate: dict[str, Path]
) -> None:
    # given: the default context trusts only the system's CAs, not our self-signed certificate
    handler, port = smtp_server(tls_context=_server_tls(certificate), require_starttls=True)
    mailer = SmtpMailer("127.0.0.1", port, security="starttls", timeout=5)

    # when / then
    with pytest.raises(PermanentMailError):
        mailer.send(_message())
    assert handler.envelopes == []


@pytest.mark.parametrize(
    ("_case", "rcpt_reply", "data_reply", "error", "code"),
    [
        (
            "recipient unknown",
            "550 5.1.1 <kundin@example.test>: Recipient address rejected",
            None,
            PermanentMailError,
            550,
        ),
        (
            "recipient greylisted",
            "451 4.7.1 <kundin@example.test>: Greylisted, try again later",
            None,
            TransientMailError,
            451,
        ),
        ("message rejected as spam", None, "554 5.7.1 Message rejected", PermanentMailError, 554),
        ("server busy at data", None, "451 4.3.0 Temporary local problem", TransientMailError, 451),
    ],
)
def test_smtp_refusals_map_to_error_class(
    _case: str,
    rcpt_reply: str | None,
    data_reply: str | None,
    error: type[Exception],
    code: int,
    smtp_server: Callable[..., tuple[Collector, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given
    handler, port = smtp_server(Collector(rcpt_reply=rcpt_reply, data_reply=data_reply))
    mailer = SmtpMailer("127.0.0.1", port, security="none", timeout=5)
    caplog.set_level(logging.DEBUG, logger="app.messaging.send")

    # when
    with pytest.raises(error) as caught:
        mailer.send(_message())

    # then
    assert caught.value.smtp_code == code  # type: ignore[attr-defined]
    assert RECIPIENT not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    ours = [r for r in caplog.records if r.name == "app.messaging.send"]
    assert ours and all(RECIPIENT not in str(vars(r)) for r in ours)


def test_smtp_nothing_listening_is_transient() -> None:
    # given
    mailer = SmtpMailer("127.0.0.1", free_port(), security="none", timeout=2)

    # when / then
    with pytest.raises(TransientMailError):
        mailer.send(_message())


def test_outbox_writes_a_parsable_eml(tmp_path: Path) -> None:
    # given
    folder = tmp_path / "outbox"
    mailer = OutboxMailer(folder)

    # when
    message_id = mailer.send(_message())

    # then
    files = list(folder.iterdir())
    assert len(files) == 1  # no temp file left behind
    assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{8}\.eml", files[0].name)
    saved = _parse(files[0].read_bytes())
    assert saved["Message-ID"] == message_id
    assert saved["Subject"] == SUBJECT
    assert saved["To"] == RECIPIENT
    assert [p.get_content_type() for p in saved.iter_parts()] == ["text/plain", "text/html"]
    html = saved.get_body(preferencelist=("html",))
    assert html is not None and "<b>25,00 €</b>" in html.get_content()


def test_outbox_unwritable_is_transient(tmp_path: Path) -> None:
    # given: the outbox path is a file, so no folder can be made there
    blocker = tmp_path / "outbox"
    blocker.write_text("not a folder")

    # when / then
    with pytest.raises(TransientMailError):
        OutboxMailer(blocker).send(_message())


@pytest.mark.parametrize(
    ("_case", "overrides", "expected"),
    [
        ("no smtp host writes the outbox", {}, OutboxMailer),
        ("smtp host set", {"SMTP_HOST": "smtp.example.test"}, SmtpMailer),
    ],
)
def test_mailer_from_config_picks_transport(
    _case: str, overrides: dict[str, Any], expected: type, tmp_path: Path
) -> None:
    # given
    cfg: dict[str, Any] = {
        "SMTP_HOST": None,
        "SMTP_PORT": 2525,
        "SMTP_SECURITY": "starttls",
        "SMTP_USERNAME": "u",
        "SMTP_PASSWORD": "geheim",
        "SMTP_TIMEOUT": 7,
        "OUTBOX_PATH": str(tmp_path / "outbox"),
        **overrides,
    }

    # when
    mailer = mailer_from_config(cfg)

    # then
    assert isinstance(mailer, expected)
    assert isinstance(mailer, Mailer)
    assert "geheim" not in repr(mailer)
