"""Platform connectors: verify and parse webhooks with no I/O, and talk back to the platform.

`CONNECTORS` is the explicit registry; adding a platform means adding a sub-package that exports
`connector` and an entry here (see README, "Adding a platform").
"""

from __future__ import annotations

from connectors import shopify, woocommerce
from connectors.base import Connector

CONNECTORS: dict[str, Connector] = {
    "shopify": shopify.connector,
    "woocommerce": woocommerce.connector,
}


def get_connector(platform: str) -> Connector:
    """Return the connector for `platform`.

    Raises:
        KeyError: no such platform.
    """
    return CONNECTORS[platform]
