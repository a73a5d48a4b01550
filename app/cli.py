"""Command-line interface: `flask --app app <group> <command>` (see README)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.db import session_scope

shops_cli = AppGroup("shops", help="Register and list shops.")
customers_cli = AppGroup("customers", help="Look up customers.")
staff_cli = AppGroup("staff", help="Manage support staff log-ins.")
deliveries_cli = AppGroup("deliveries", help="Inspect and replay webhook deliveries.")
db_cli = AppGroup("db", help="Database migrations.")


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@shops_cli.command("add")
@click.option("--platform", type=click.Choice(["shopify", "woocommerce"]), required=True)
@click.option("--domain", required=True, help="x.myshopify.com, or the WooCommerce store base URL")
@click.option("--webhook-secret", help="secret the shop signs webhooks with (Shopify apps: the app secret)")
@click.option("--currency", help="ISO 4217 shop currency, e.g. EUR")
@click.option("--name")
@click.option("--timezone", "tz", help="IANA time zone, e.g. Europe/Berlin")
@click.option("--language", type=click.Choice(["de", "en"]))
@click.option("--api-token", help="Shopify Admin API access token")
@click.option("--consumer-key", help="WooCommerce REST consumer key")
@click.option("--consumer-secret", help="WooCommerce REST consumer secret")
def shops_add(platform: str, domain: str, webhook_secret: str | None, currency: str | None, name: str | None,
              tz: str | None, language: str | None, api_token: str | None, consumer_key: str | None,
              consumer_secret: str | None) -> None:
    """Register a shop (or update it when it exists) and print its id."""
    from app.shops import register_shop

    credentials: dict[str, Any] = {}
    if api_token:
        credentials["access_token"] = api_token
    if consumer_key or consumer_secret:
        if not (consumer_key and consumer_secret):
            _fail("--consumer-key and --consumer-secret go together")
        credentials.update(consumer_key=consumer_key, consumer_secret=consumer_secret)
    if currency and (len(currency) != 3 or not currency.isalpha()):
        _fail(f"--currency must be a 3-letter ISO code, got {currency!r}")
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            _fail(f"--timezone {tz!r} is not an IANA time zone")
    with session_scope() as session:
        shop, created = register_shop(
            session,
            keys=current_app.config["ENCRYPTION_KEY"],
            platform=platform,
            domain=domain,
            webhook_secret=webhook_secret,
            currency=currency,
            name=name,
            timezone=tz,
            language=language,
            credentials=credentials or None,
        )
        click.echo(shop.id)
        click.echo(f"{'created' if created else 'updated'} {platform} shop {shop.domain}", err=True)


@shops_cli.command("list")
def shops_list() -> None:
    """List registered shops."""
    from sqlalchemy import select

    from app.models import Shop

    with session_scope() as session:
        for shop in session.scalars(select(Shop).order_by(Shop.id)):
            click.echo(f"{shop.id}\t{shop.platform.value}\t{shop.domain}\t{shop.currency}\t{shop.status.value}")


@customers_cli.command("show")
@click.option("--shop", "shop_domain", required=True, help="shop domain or base URL")
@click.option("--email", required=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def customers_show(shop_domain: str, email: str, as_json: bool) -> None:
    """Show a customer's balance and the ledger explaining it."""
    from app.customers import find_by_email
    from app.explain import customer_report
    from app.shops import UnknownShopError, get_shop
    from connectors.base import normalize_email

    with session_scope() as session:
        try:
            shop = get_shop(session, shop_domain)
        except UnknownShopError as exc:
            _fail(str(exc))
            return
        customer = find_by_email(session, shop.id, normalize_email(email) or "")
        if customer is None:
            _fail(f"no customer with e-mail {email!r} in shop {shop.domain}")
            return
        report = customer_report(session, customer)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['email']}: {report['available']} available, {report['pending']} pending")
    for entry in report["ledger"]:
        click.echo(f"  {entry['delta']:+6d}  {entry['why']}")


@staff_cli.command("create")
@click.option("--email", required=True)
@click.password_option(help="at least 12 characters (prompted when not given)")
def staff_create(email: str, password: str) -> None:
    """Create a staff log-in for the admin page (or set a new password)."""
    from app.staff import create_staff

    with session_scope() as session:
        try:
            user = create_staff(session, email, password)
        except ValueError as exc:
            _fail(str(exc))
            return
        click.echo(f"staff user {user.email} can log in at /admin/")


@deliveries_cli.command("replay")
@click.argument("delivery_id", type=int)
def deliveries_replay(delivery_id: int) -> None:
    """Put a delivery back in the queue."""
    from jobs.deliveries import replay_delivery

    if not replay_delivery(delivery_id):
        _fail(f"no delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} queued")


@deliveries_cli.command("requeue")
@click.option("--older-than", default=None, type=int, help="seconds (default REQUEUE_AFTER_SECONDS)")
def deliveries_requeue(older_than: int | None) -> None:
    """Enqueue deliveries still waiting (what the clock's sweep does)."""
    from jobs.deliveries import requeue_stuck_deliveries

    click.echo(f"{requeue_stuck_deliveries(older_than)} deliveries queued")


@click.command("sweep")
def sweep() -> None:
    """Run every scheduled sweep once, now (the same code the clock triggers)."""
    from jobs.deliveries import requeue_stuck_deliveries
    from jobs.points import mature_points

    click.echo(f"requeued deliveries: {requeue_stuck_deliveries()}")
    click.echo(f"lots made available: {mature_points()}")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (what the Procfile release phase runs)."""
    from app.migrate import upgrade

    upgrade(current_app.config["DATABASE_URL"])
    click.echo("database is up to date")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    from app.demo import demo

    for command in (shops_cli, customers_cli, staff_cli, deliveries_cli, db_cli, sweep, demo):
        app.cli.add_command(command)
