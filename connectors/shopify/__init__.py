"""Shopify connector: sans-I/O webhook verify and parse (`webhooks`), constants (`consts`) and
the Admin GraphQL client (`client`).

`connector` is what the registry in `connectors/__init__.py` holds; it fulfils
`connectors.base.Connector`.
"""

from __future__ import annotations

from urllib.parse import quote

from connectors.shopify import client, webhooks
from connectors.shopify.consts import PLATFORM


class ShopifyConnector:
    """Shopify's side of the `connectors.base.Connector` contract."""

    platform = PLATFORM
    SUPPORTED_TOPICS = webhooks.SUPPORTED_TOPICS
    REQUIRED_CREDENTIALS = ("access_token",)
    CREDENTIALS_OPTIONS = "--api-token <Admin API access token>"
    # A Shopify app signs every shop's webhooks with its client secret.
    # https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
    WEBHOOKS_SIGNED_BY_APP = True
    # Shopify has checkouts of its own (checkouts/* topics); an unpaid order is not one.
    ORDERS_ARE_CHECKOUTS = False

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
    find_discount_code = staticmethod(client.find_discount_code)
    deactivate_discount_code = staticmethod(client.deactivate_discount_code)
    withdraw_discount_code = staticmethod(client.withdraw_discount_code)
    mark_gift = staticmethod(client.mark_gift)
    fetch_products = staticmethod(client.fetch_products)
    credit_store_credit = staticmethod(client.credit_store_credit)
    check_credentials = staticmethod(client.check_credentials)
    tier_label = staticmethod(client.tier_label)
    set_customer_tier = staticmethod(client.set_customer_tier)

    @staticmethod
    def storefront_url(shop: str) -> str:
        """Return `https://<shop domain>`."""
        return f"https://{shop}"

    @staticmethod
    def discount_link(shop: str, code: str) -> str | None:
        """Return `https://<shop>/discount/<code>`: Shopify applies the code to the visitor's cart.

        https://help.shopify.com/en/manual/discounts/discount-methods/discount-links
        """
        return f"https://{shop}/discount/{quote(code, safe='')}"


connector = ShopifyConnector()

__all__ = ["ShopifyConnector", "connector"]
