"""Shopify connector: sans-I/O webhook verify and parse (`webhooks`), constants (`consts`) and
the Admin GraphQL client (`client`).

`connector` is what the registry in `connectors/__init__.py` holds.
"""

from __future__ import annotations

from connectors.shopify import client
from connectors.shopify.webhooks import ShopifyConnector as _WebhookConnector


class ShopifyConnector(_WebhookConnector):
    """Shopify's side of the `Connector` contract: sans-I/O webhooks plus outbound Admin calls."""

    create_discount_code = staticmethod(client.create_discount_code)
    find_discount_code = staticmethod(client.find_discount_code)
    deactivate_discount_code = staticmethod(client.deactivate_discount_code)
    add_order_tags = staticmethod(client.add_order_tags)


connector = ShopifyConnector()

__all__ = ["ShopifyConnector", "connector"]
