"""Shopify connector: sans-I/O webhook verify and parse (`webhooks`), constants (`consts`).

`connector` is what the registry in `connectors/__init__.py` holds.
"""

from __future__ import annotations

from connectors.shopify.webhooks import ShopifyConnector

connector = ShopifyConnector()

__all__ = ["ShopifyConnector", "connector"]
