"""`flask --app app demo`: register two demo shops and post signed webhooks to the running app.

Everything goes through the real HTTP endpoint of `make run`, so the demo exercises signature
checks, the inbox, the dispatcher, the worker and the ledger exactly as a shop would.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from app.db import session_scope
from app.shops import register_shop
from connectors import get_connector
from connectors.base import hmac_sha256_base64

DATA = Path(__file__).resolve().parent.parent / "demo_data"
SHOPIFY_DOMAIN = "stammkunde-demo.myshopify.com"
SHOPIFY_SECRET = "demo-shopify-webhook-secret"  # demo only: never a real shop's secret
WOO_URL = "http://woo-demo.localhost"
WOO_SECRET = "demo-woocommerce-webhook-secret"


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def _money(amount: str, currency: str) -> dict[str, Any]:
    return {"shop_money": {"amount": amount, "currency_code": currency},
            "presentment_money": {"amount": amount, "currency_code": currency}}


def shopify_order(order_id: int, *, email: str, customer_id: int | None, subtotal: str, status: str,
                  updated_at: datetime) -> dict[str, Any]:
    """Return an orders/* body for the demo shop (EUR), based on Shopify's docs example."""
    body = copy.deepcopy(_load("shopify_order.json"))
    body.update(id=order_id, name=f"#{order_id}", order_number=order_id, email=email, contact_email=email,
                currency="EUR", presentment_currency="EUR", financial_status=status,
                subtotal_price=subtotal, subtotal_price_set=_money(subtotal, "EUR"),
                created_at=updated_at.isoformat(), processed_at=updated_at.isoformat(),
                updated_at=updated_at.isoformat())
    if customer_id is None:
        body.pop("customer", None)
    else:
        first = email.split("@")[0].capitalize()
        body["customer"] = {**body["customer"], "id": customer_id, "email": email, "first_name": first,
                            "last_name": "Beispiel", "updated_at": updated_at.isoformat(),
                            "created_at": updated_at.isoformat(),
                            "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in",
                                                        "consent_updated_at": updated_at.isoformat()}}
    return body


def shopify_refund(refund_id: int, order_id: int, when: datetime) -> dict[str, Any]:
    """Return a refunds/create body (two of the docs example's lines, 391.33 of merchandise)."""
    body = copy.deepcopy(_load("shopify_refund.json"))
    body.update(id=refund_id, order_id=order_id, created_at=when.isoformat(), processed_at=when.isoformat())
    return body


def woo_order(order_id: int, *, email: str, status: str, modified: datetime, refund: str | None = None) -> dict[str, Any]:
    """Return an order.* body for the demo WooCommerce shop, based on a real captured delivery."""
    body = copy.deepcopy(_load("woocommerce_order.json"))
    stamp = modified.strftime("%Y-%m-%dT%H:%M:%S")
    body.update(id=order_id, number=str(order_id), status=status, currency="EUR",
                date_modified_gmt=stamp, date_modified=stamp)
    body["billing"] = {**body["billing"], "email": email}
    if refund:
        body["refunds"] = [{"id": order_id * 10, "reason": "Demo", "total": f"-{refund}"}]
    return body


def _post(base: str, platform: str, topic: str, body: dict[str, Any], secret: str, event: str) -> int:
    raw = json.dumps(body).encode()
    signature = hmac_sha256_base64(secret, raw)
    shop = {"shopify": SHOPIFY_DOMAIN, "woocommerce": WOO_URL}[platform]
    headers = get_connector(platform).delivery_headers(shop, topic, signature=signature, event_id=event)
    headers["Content-Type"] = "application/json"
    response = requests.post(f"{base}/webhooks/{platform}", data=raw, headers=headers, timeout=10)
    return response.status_code


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.command("demo")
@click.option("--url", default=None,
              help="base URL of the running app (default: the one `make run` recorded, else http://127.0.0.1:$PORT)")
@with_appcontext
def demo(url: str | None) -> None:
    """Register demo shops and post signed webhooks through the running app's HTTP endpoint."""
    base = (url or current_app.config["WEB_URL"]).rstrip("/")
    # Nothing is registered unless the app answers: a wrong URL leaves no half-done demo behind.
    try:
        requests.get(f"{base}/admin/login", timeout=5)
    except requests.RequestException:
        _fail(f"the app does not answer at {base}: start it with `make run` first (or pass --url)")
    keys = current_app.config["ENCRYPTION_KEY"]
    # Both shops in one transaction, updated in place on a re-run.
    with session_scope() as session:
        register_shop(session, keys=keys, platform="shopify", domain=SHOPIFY_DOMAIN, webhook_secret=SHOPIFY_SECRET,
                      currency="EUR", name="Stammkunde Demo (Shopify)", language="de", timezone="Europe/Berlin")
        register_shop(session, keys=keys, platform="woocommerce", domain=WOO_URL, webhook_secret=WOO_SECRET,
                      currency="EUR", name="Stammkunde Demo (WooCommerce)", language="de", timezone="Europe/Berlin")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    steps: list[tuple[str, str, str, dict[str, Any], str, str]] = [
        ("Anna pays order #5001 (587.00 EUR)", "shopify", "orders/paid",
         shopify_order(5001, email="anna@example.test", customer_id=9001, subtotal="587.00", status="paid", updated_at=now),
         SHOPIFY_SECRET, "demo-1"),
        ("the same delivery again (duplicate: nothing new)", "shopify", "orders/paid",
         shopify_order(5001, email="anna@example.test", customer_id=9001, subtotal="587.00", status="paid", updated_at=now),
         SHOPIFY_SECRET, "demo-1"),
        ("a partial refund of #5001 (391.33 of 587.00)", "shopify", "refunds/create",
         shopify_refund(7001, 5001, now + timedelta(minutes=5)), SHOPIFY_SECRET, "demo-2"),
        ("a guest order #5002 by ben@example.test (120.00 EUR)", "shopify", "orders/paid",
         shopify_order(5002, email="ben@example.test", customer_id=None, subtotal="120.00", status="paid", updated_at=now),
         SHOPIFY_SECRET, "demo-3"),
        ("out of order: an older orders/updated of #5001 arrives late (ignored snapshot)", "shopify", "orders/updated",
         shopify_order(5001, email="anna@example.test", customer_id=9001, subtotal="587.00", status="pending",
                       updated_at=now - timedelta(hours=1)),
         SHOPIFY_SECRET, "demo-4"),
        ("out of order: a refund of #5003 before its order", "shopify", "refunds/create",
         shopify_refund(7003, 5003, now + timedelta(minutes=6)), SHOPIFY_SECRET, "demo-5"),
        ("... then #5003 is paid (587.00) by carla@example.test", "shopify", "orders/paid",
         shopify_order(5003, email="carla@example.test", customer_id=9003, subtotal="587.00", status="paid", updated_at=now),
         SHOPIFY_SECRET, "demo-6"),
        ("WooCommerce: order 61 paid (25.00 EUR) by jana@example.test", "woocommerce", "order.created",
         woo_order(61, email="jana@example.test", status="processing", modified=now), WOO_SECRET, ""),
        ("WooCommerce: 5.00 of order 61 refunded", "woocommerce", "order.updated",
         woo_order(61, email="jana@example.test", status="processing", modified=now + timedelta(minutes=3), refund="5.00"),
         WOO_SECRET, ""),
    ]
    for text, platform, topic, body, secret, event in steps:
        try:
            status = _post(base, platform, topic, body, secret, event)
        except requests.RequestException as exc:
            _fail(f"the app stopped answering at {base} ({type(exc).__name__}); run `make demo` again once it is up")
        click.echo(f"{status}  {platform:<11} {topic:<15} {text}")
    click.echo("")
    click.echo("Within a few seconds the worker has processed these. Look them up:")
    for shop, email in ((SHOPIFY_DOMAIN, "anna@example.test"), (SHOPIFY_DOMAIN, "ben@example.test"),
                        (SHOPIFY_DOMAIN, "carla@example.test"), (WOO_URL, "jana@example.test")):
        click.echo(f"  .venv/bin/flask --app app customers show --shop {shop} --email {email}")
    click.echo(f"or on the admin page: {base}/admin/customers?q=example.test")
