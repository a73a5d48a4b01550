"""The counters the jobs and mailers keep: a failed platform call by kind, e-mails by outcome."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from app.messaging.send import OutboxMailer, OutgoingMessage, TransientMailError
from app.telemetry import platform_call
from connectors.errors import PermanentError, RateLimitedError, TransientError


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("_case", "error", "kind"),
    [
        ("429 or THROTTLED", RateLimitedError("throttled", retry_after=2.0), "rate_limited"),
        ("timeout or 5xx", TransientError("timeout"), "transient"),
        ("refused", PermanentError("code exists with another value"), "permanent"),
    ],
)
def test_a_failed_platform_call_is_counted_by_kind_and_still_raised(_case, error, kind):
    # given the count so far
    labels = {"platform": "shopify", "operation": "create_discount_code", "kind": kind}
    before = _value("stammkunde_platform_api_errors_total", **labels)

    # when a platform call fails
    with pytest.raises(type(error)):
        with platform_call("shopify", "create_discount_code"):
            raise error

    # then it is counted once under its kind, and the job still sees the error (RQ retries it)
    assert _value("stammkunde_platform_api_errors_total", **labels) - before == 1


def test_a_bug_is_not_counted_as_a_platform_error():
    before = sum(s.value for m in REGISTRY.collect() if m.name == "stammkunde_platform_api_errors" for s in m.samples)
    with pytest.raises(KeyError):
        with platform_call("woocommerce", "mark_gift"):
            raise KeyError("tag")
    after = sum(s.value for m in REGISTRY.collect() if m.name == "stammkunde_platform_api_errors" for s in m.samples)
    assert after == before


def _message() -> OutgoingMessage:
    return OutgoingMessage(to="kundin@example.test", from_addr="no-reply@stammkunde.example", subject="Hallo",
                           text="Hallo\n", html="<p>Hallo</p>")


def test_emails_are_counted_by_outcome(tmp_path):
    # given the counts so far
    sent = _value("stammkunde_emails_total", transport="outbox", outcome="sent")
    failed = _value("stammkunde_emails_total", transport="outbox", outcome="transient_error")

    # when one message is written and one cannot be (the outbox is a file, not a folder)
    OutboxMailer(tmp_path / "outbox").send(_message())
    (tmp_path / "blocked").write_text("")
    with pytest.raises(TransientMailError):
        OutboxMailer(tmp_path / "blocked").send(_message())

    # then each is counted under its outcome
    assert _value("stammkunde_emails_total", transport="outbox", outcome="sent") - sent == 1
    assert _value("stammkunde_emails_total", transport="outbox", outcome="transient_error") - failed == 1
