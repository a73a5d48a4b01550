"""The WooCommerce connector: verify and parse webhook deliveries (see `webhooks.py`) and call
the REST API (see `client.py`)."""

from __future__ import annotations

from connectors.woocommerce import client, webhooks
from connectors.woocommerce.consts import PLATFORM


class WooCommerceConnector:
    """WooCommerce's side of the `connectors.base.Connector` contract."""

    platform = PLATFORM
    SUPPORTED_TOPICS = webhooks.SUPPORTED_TOPICS

    normalize_shop = staticmethod(webhooks.normalize_shop)
    shop_from_headers = staticmethod(webhooks.shop_from_headers)
    topic_from_headers = staticmethod(webhooks.topic_from_headers)
    is_ping = staticmethod(webhooks.is_ping)
    verify = staticmethod(webhooks.verify)
    delivery_key = staticmethod(webhooks.delivery_key)
    parse_event = staticmethod(webhooks.parse_event)
    create_discount_code = staticmethod(client.create_discount_code)
    find_discount_code = staticmethod(client.find_discount_code)
    deactivate_discount_code = staticmethod(client.deactivate_discount_code)
    add_order_note = staticmethod(client.add_order_note)


connector = WooCommerceConnector()

__all__ = ["connector"]
