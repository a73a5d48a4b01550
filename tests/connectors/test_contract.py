"""Every connector in the registry (and the tests' fake) fulfils `connectors.base.Connector`, and
both platforms are built the same way (STYLE rules 2 and 3)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

import connectors
from connectors.base import Connector
from tests.connectors.fake import FakeConnector

# The contract's members: its annotated attributes and its methods.
ATTRIBUTES = tuple(name for name in Connector.__annotations__)
METHODS = tuple(
    name for name, value in vars(Connector).items() if not name.startswith("_") and inspect.isfunction(value)
)
MODULES = ("__init__.py", "client.py", "consts.py", "webhooks.py")

CASES = [(platform, connector) for platform, connector in connectors.CONNECTORS.items()] + [
    (f"fake {platform}", FakeConnector(real=connector)) for platform, connector in connectors.CONNECTORS.items()
]


def _shape(signature: inspect.Signature) -> list[tuple[str, Any, Any]]:
    """Return the parameters' names, kinds and defaults (annotations are strings here)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_the_contract_lists_the_platform_differences():
    # then the contract holds what jobs and the domain used to branch on the platform for
    assert {"credentials", "mark_gift", "find_discount_code", "deactivate_discount_code", "storefront_url",
            "discount_link"} <= set(METHODS)
    assert {"platform", "SUPPORTED_TOPICS", "REQUIRED_CREDENTIALS", "ORDERS_ARE_CHECKOUTS",
            "WEBHOOKS_SIGNED_BY_APP"} <= set(ATTRIBUTES)


@pytest.mark.parametrize(("_case", "connector"), CASES)
def test_connector_fulfils_the_protocol(_case: str, connector: Any):
    # then it is a Connector (runtime check: every member present) ...
    assert isinstance(connector, Connector)
    # ... and every method takes exactly the contract's parameters
    for name in METHODS:
        expected = inspect.signature(getattr(Connector, name))
        expected = expected.replace(parameters=list(expected.parameters.values())[1:])  # without self
        assert _shape(inspect.signature(getattr(connector, name))) == _shape(expected), name
    # and its facts have the contract's types
    assert isinstance(connector.SUPPORTED_TOPICS, tuple) and connector.SUPPORTED_TOPICS
    assert all(isinstance(topic, str) for topic in connector.SUPPORTED_TOPICS)
    assert isinstance(connector.REQUIRED_CREDENTIALS, tuple) and connector.REQUIRED_CREDENTIALS
    assert isinstance(connector.CREDENTIALS_OPTIONS, str) and connector.CREDENTIALS_OPTIONS
    assert isinstance(connector.WEBHOOKS_SIGNED_BY_APP, bool)
    assert isinstance(connector.ORDERS_ARE_CHECKOUTS, bool)


@pytest.mark.parametrize("platform", list(connectors.CONNECTORS))
def test_platforms_are_built_the_same_way(platform: str):
    # given the registered connector
    connector = connectors.CONNECTORS[platform]
    package = importlib.import_module(f"connectors.{platform}")

    # then its package has the same modules as every other, exports `connector`, is registered
    # under its own name and dispatches exactly its supported topics
    folder = Path(package.__file__).parent
    assert sorted(p.name for p in folder.glob("*.py")) == sorted(MODULES)
    assert package.connector is connector and package.__all__[-1] == "connector"
    assert connector.platform == platform == importlib.import_module(f"connectors.{platform}.consts").PLATFORM
    webhooks = importlib.import_module(f"connectors.{platform}.webhooks")
    assert connector.SUPPORTED_TOPICS == tuple(webhooks.TOPIC_HANDLERS)
    # and its public members are exactly the contract's: nothing a caller could branch on
    public = {name for name in dir(connector) if not name.startswith("_")}
    assert public == set(ATTRIBUTES) | set(METHODS)


@pytest.mark.parametrize("platform", list(connectors.CONNECTORS))
def test_delivery_headers_are_what_the_connector_reads(platform: str):
    # given the headers a platform sends with a delivery
    connector = connectors.CONNECTORS[platform]
    shop = connector.normalize_shop("laden.myshopify.com" if platform == "shopify" else "https://laden.example")
    topic = connector.SUPPORTED_TOPICS[0]
    headers = connector.delivery_headers(shop, topic, signature="c2ln", event_id="e-1")

    # then the connector finds the shop and topic in them, and they are not a ping
    assert connector.shop_from_headers(headers) == shop
    assert connector.topic_from_headers(headers) == topic
    assert connector.is_ping(headers, b"webhook_id=1") is False


@pytest.mark.parametrize(
    ("_case", "platform", "shop", "storefront", "link"),
    [
        ("shopify", "shopify", "laden.myshopify.com", "https://laden.myshopify.com",
         "https://laden.myshopify.com/discount/SK-A%2FB%20C"),
        ("woocommerce in a folder", "woocommerce", "https://laden.example/shop", "https://laden.example/shop", None),
    ],
)
def test_shop_addresses(_case: str, platform: str, shop: str, storefront: str, link: str | None):
    # when the storefront and a discount link are asked for
    connector = connectors.CONNECTORS[platform]

    # then Shopify's link applies the code (escaped), WooCommerce core has none
    assert connector.storefront_url(shop) == storefront
    assert connector.discount_link(shop, "SK-A/B C") == link
