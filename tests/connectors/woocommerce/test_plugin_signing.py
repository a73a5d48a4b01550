"""The plugin's request signing, sans I/O: the shared test vector (the PHP side checks the same
file in its SignerTest) and each way a signature is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.errors import InvalidSignatureError, MissingSignatureError
from connectors.woocommerce.webhooks import StalePluginRequestError as StaleRequestError
from connectors.woocommerce.webhooks import canonical_plugin_request as canonical_request
from connectors.woocommerce.webhooks import read_plugin_headers as read_headers
from connectors.woocommerce.webhooks import sign_plugin_request as sign_request
from connectors.woocommerce.webhooks import verify_plugin_request as verify_request

VECTOR = json.loads((Path(__file__).resolve().parents[3] / "connectors" / "woocommerce" / "wordpress-plugin"
                     / "tests" / "signing-vector.json").read_text(encoding="utf-8"))


def _headers(**change: str) -> dict[str, str]:
    headers = {"X-Stammkunde-Shop": "7", "X-Stammkunde-Timestamp": str(VECTOR["timestamp"]),
               "X-Stammkunde-Nonce": VECTOR["nonce"], "X-Stammkunde-Signature": VECTOR["signature"]}
    headers.update(change)
    return headers


def test_the_shared_vector_signs_the_same_on_this_side():
    # given the request the vector describes
    body = VECTOR["body"].encode("utf-8")

    # when it is signed here
    canonical = canonical_request(VECTOR["method"], VECTOR["path"], VECTOR["timestamp"], VECTOR["nonce"], body)
    signature = sign_request(VECTOR["secret"], VECTOR["method"], VECTOR["path"], VECTOR["timestamp"],
                             VECTOR["nonce"], body)

    # then it is byte for byte what the PHP side computes from the same file
    assert canonical.decode("utf-8") == VECTOR["canonical"]
    assert signature == VECTOR["signature"]


def test_the_vectors_request_verifies_within_the_window():
    # when the vector's request arrives 299 seconds after it was signed
    signed = read_headers(_headers())
    verify_request(signed, "POST", VECTOR["path"], VECTOR["body"].encode(), secret=VECTOR["secret"],
                   now=VECTOR["timestamp"] + 299)

    # then it is accepted, naming the shop and its nonce
    assert (signed.shop_id, signed.nonce) == (7, VECTOR["nonce"])


@pytest.mark.parametrize(("_case", "method", "path", "body", "secret", "now", "error"), [
    ("tampered body", "POST", VECTOR["path"], b'{"reward":"50 \xe2\x82\xac Gutschein"}', VECTOR["secret"],
     VECTOR["timestamp"], InvalidSignatureError),
    ("other path", "POST", "/api/woocommerce/v1/customers/43/redemptions?lang=de", VECTOR["body"].encode(),
     VECTOR["secret"], VECTOR["timestamp"], InvalidSignatureError),
    ("other method", "PUT", VECTOR["path"], VECTOR["body"].encode(), VECTOR["secret"], VECTOR["timestamp"],
     InvalidSignatureError),
    ("wrong secret", "POST", VECTOR["path"], VECTOR["body"].encode(), "anderes-geheimnis", VECTOR["timestamp"],
     InvalidSignatureError),
    ("no secret", "POST", VECTOR["path"], VECTOR["body"].encode(), "", VECTOR["timestamp"], InvalidSignatureError),
    ("stale", "POST", VECTOR["path"], VECTOR["body"].encode(), VECTOR["secret"], VECTOR["timestamp"] + 301,
     StaleRequestError),
    ("from the future", "POST", VECTOR["path"], VECTOR["body"].encode(), VECTOR["secret"], VECTOR["timestamp"] - 301,
     StaleRequestError),
])
def test_refused_signatures(_case, method, path, body, secret, now, error):
    # given the vector's headers
    signed = read_headers(_headers())

    # when anything signed differs, or the clock is more than 5 minutes off
    with pytest.raises(error):
        verify_request(signed, method, path, body, secret=secret, now=now)


@pytest.mark.parametrize(("_case", "change"), [
    ("no signature", {"X-Stammkunde-Signature": ""}),
    ("shop not a number", {"X-Stammkunde-Shop": "sieben"}),
    ("timestamp not a number", {"X-Stammkunde-Timestamp": "gestern"}),
    ("nonce too short", {"X-Stammkunde-Nonce": "abc"}),
])
def test_malformed_headers_are_missing_signatures(_case, change):
    # when a header is missing or malformed
    with pytest.raises(MissingSignatureError):
        read_headers(_headers(**change))
