"""WooCommerce connector: sans-I/O webhook verify and parse (`webhooks`), constants (`consts`)
and the REST v3 client (`client`).

`connector` is what the registry in `connectors/__init__.py` holds; it fulfils
`connectors.base.Connector`.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import PermanentError
from connectors.types import DiscountCode, DiscountSpec
from connectors.woocommerce import client, webhooks
from connectors.woocommerce.consts import PLATFORM


class WooCommerceConnector:
    """WooCommerce's side of the `connectors.base.Connector` contract."""

    platform = PLATFORM
    SUPPORTED_TOPICS = webhooks.SUPPORTED_TOPICS
    REQUIRED_CREDENTIALS = ("consumer_key", "consumer_secret")
    CREDENTIALS_OPTIONS = "--consumer-key <ck_...> --consumer-secret <cs_...>"
    # Each WooCommerce webhook has its own secret; there is no app secret.
    WEBHOOKS_SIGNED_BY_APP = False
    # WooCommerce has no checkout topic: an unpaid order (pending, failed, checkout-draft) is
    # the only record of an unfinished checkout.
    ORDERS_ARE_CHECKOUTS = True

    normalize_shop = staticmethod(webhooks.normalize_shop)
    shop_from_headers = staticmethod(webhooks.shop_from_headers)
    topic_from_headers = staticmethod(webhooks.topic_from_headers)
    is_ping = staticmethod(webhooks.is_ping)
    verify = staticmethod(webhooks.verify)
    delivery_key = staticmethod(webhooks.delivery_key)
    parse_event = staticmethod(webhooks.parse_event)
    delivery_headers = staticmethod(webhooks.delivery_headers)

    credentials = staticmethod(client.credentials)
    create_discount_code = staticmethod(client.create_discount_code)

    @staticmethod
    def credit_store_credit(credentials: Any, spec: DiscountSpec) -> DiscountCode:
        """WooCommerce's core has no store credit: always refused (the points go back).

        Raises:
            PermanentError: always.
        """
        raise PermanentError("WooCommerce has no store credit; offer a fixed amount instead")
    find_discount_code = staticmethod(client.find_discount_code)
    deactivate_discount_code = staticmethod(client.deactivate_discount_code)
    withdraw_discount_code = staticmethod(client.withdraw_discount_code)
    mark_gift = staticmethod(client.mark_gift)
    fetch_products = staticmethod(client.fetch_products)
    check_credentials = staticmethod(client.check_credentials)
    tier_label = staticmethod(client.tier_label)
    set_customer_tier = staticmethod(client.set_customer_tier)

    @staticmethod
    def storefront_url(shop: str) -> str:
        """Return the store base URL, which is the shop's canonical identifier already."""
        return shop

    @staticmethod
    def discount_link(shop: str, code: str) -> str | None:
        """Return None: core WooCommerce has no link that applies a coupon.

        `/?coupon=<code>` is ignored (captured: no cookie, no session, the cart stays without
        it), and `/checkout-link/` needs products and empties the cart.
        """
        return None


connector = WooCommerceConnector()

__all__ = ["WooCommerceConnector", "connector"]
