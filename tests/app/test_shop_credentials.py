"""Whether a shop holds API credentials its platform's calls can use (`app.shops`)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from app import crypto, shops
from app.db import session_scope
from app.models import Shop
from tests.conftest import SHOPIFY_DOMAIN, TEST_ENCRYPTION_KEY, WOO_DOMAIN

pytestmark = pytest.mark.sqlite_only  # none of these depends on which database


@pytest.mark.parametrize(
    ("_case", "platform", "credentials", "usable"),
    [
        ("shopify with a token", "shopify", {"access_token": "shpat_x"}, True),
        ("shopify registered without --api-token", "shopify", None, False),
        ("shopify with only woocommerce keys", "shopify", {"consumer_key": "ck", "consumer_secret": "cs"}, False),
        ("shopify with a blank token", "shopify", {"access_token": "  "}, False),
        ("woocommerce with both keys", "woocommerce", {"consumer_key": "ck", "consumer_secret": "cs"}, True),
        ("woocommerce registered without keys", "woocommerce", None, False),
        ("woocommerce with a shopify token only", "woocommerce", {"access_token": "shpat_x"}, False),
    ],
)
def test_api_credentials_are_usable_only_with_the_platform_fields(make_shop, _case, platform, credentials, usable):
    # given a shop registered as `flask shops add` does, with or without API credentials
    shop_id = make_shop(platform, credentials=credentials)

    # when the job asks whether its API can be called
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        reason = shops.missing_api_credentials(shop, TEST_ENCRYPTION_KEY)
        result = shops.has_api_credentials(shop, TEST_ENCRYPTION_KEY)

    # then only complete credentials count; otherwise the reason names the command to fix it
    assert result is usable
    if usable:
        assert reason is None
    else:
        domain = SHOPIFY_DOMAIN if platform == "shopify" else WOO_DOMAIN
        assert reason is not None and reason.startswith("the shop has no API credentials")
        assert f"flask shops add --platform {platform} --domain {domain}" in reason


def test_credentials_no_key_opens_are_unusable_and_say_so(make_shop):
    # given credentials stored under a key the app no longer has
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_secret_token"})
    other_key = Fernet.generate_key().decode()

    # when they are checked with another key
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        with pytest.raises(crypto.SecretDecryptionError):
            shops.credentials(shop, other_key)
        reason = shops.missing_api_credentials(shop, other_key)

    # then they are unusable, the reason says why, and it holds no secret
    assert reason is not None and "cannot be decrypted with ENCRYPTION_KEY" in reason
    assert "shpat_secret_token" not in reason
