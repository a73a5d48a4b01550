"""Command-line interface: `flask --app app <group> <command>` (see README)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.db import session_scope
from connectors import CONNECTORS

shops_cli = AppGroup("shops", help="Register and list shops.")
customers_cli = AppGroup("customers", help="Look up customers.")
staff_cli = AppGroup("staff", help="Manage support staff log-ins.")
deliveries_cli = AppGroup("deliveries", help="Inspect and replay webhook deliveries.")
db_cli = AppGroup("db", help="Database migrations.")
program_cli = AppGroup("program", help="Show and change a shop's loyalty program.")
rewards_cli = AppGroup("rewards", help="Redeem rewards and list redemptions.")
points_cli = AppGroup("points", help="Adjust points by hand.")
reminders_cli = AppGroup("reminders", help="Run reminder sweeps and see what was sent.")


def _shop_and_customer(session, shop_domain: str, email: str | None):  # type: ignore[no-untyped-def]
    """Resolve --shop and --email for a command, exiting 1 with a clear message when unknown."""
    from app.loyalty.customers import find_by_email
    from app.shops import UnknownShopError, get_shop
    from connectors.base import normalize_email

    try:
        shop = get_shop(session, shop_domain)
    except UnknownShopError as exc:
        _fail(str(exc))
    if email is None:
        return shop, None
    customer = find_by_email(session, shop.id, normalize_email(email) or "")
    if customer is None:
        _fail(f"no customer with e-mail {email!r} in shop {shop.domain}")
    return shop, customer


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _needs_redis(command: Callable[..., None]) -> Callable[..., None]:
    """Make a command that enqueues jobs check Redis first, so it fails before writing any row.

    Beside `make run`, REDIS_URL comes from the run's instance/make-run.json (app/config.py).
    """

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> None:
        from redis.exceptions import RedisError

        from app.queues import RedisNotConfiguredError, ping, redis_location

        try:
            ping()
        except RedisNotConfiguredError:
            _fail("no Redis: REDIS_URL is not set and no `make run` is running; start `make run` "
                  "or set REDIS_URL. Nothing was changed.")
        except RedisError as exc:
            _fail(f"cannot reach Redis at {redis_location()} ({type(exc).__name__}); is `make run` still "
                  "running? Nothing was changed.")
        command(*args, **kwargs)

    return checked


@shops_cli.command("add")
@click.option("--platform", type=click.Choice(list(CONNECTORS)), required=True)
@click.option("--domain", required=True, help="x.myshopify.com, or the WooCommerce store base URL")
@click.option("--webhook-secret", help="secret the shop signs webhooks with (Shopify apps: the app secret)")
@click.option("--currency", help="ISO 4217 shop currency, e.g. EUR")
@click.option("--name")
@click.option("--timezone", "tz", help="IANA time zone, e.g. Europe/Berlin")
@click.option("--language", type=click.Choice(["de", "en"]))
@click.option("--api-token", help="Shopify Admin API access token")
@click.option("--consumer-key", help="WooCommerce REST consumer key")
@click.option("--consumer-secret", help="WooCommerce REST consumer secret")
@click.option("--mail-from", help='sender of the shop\'s e-mails, e.g. "Laden <hallo@laden.example>"')
@click.option("--brand-color", help="hex colour for e-mails, e.g. #2f6f4f")
@click.option("--address", help="imprint line for e-mail footers")
def shops_add(platform: str, domain: str, webhook_secret: str | None, currency: str | None, name: str | None,
              tz: str | None, language: str | None, api_token: str | None, consumer_key: str | None,
              consumer_secret: str | None, mail_from: str | None, brand_color: str | None,
              address: str | None) -> None:
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
        if brand_color is not None:
            import re

            if not re.fullmatch(r"#[0-9a-fA-F]{6}", brand_color):
                _fail(f"--brand-color must look like #2f6f4f, got {brand_color!r}")
            shop.brand_color = brand_color
        if mail_from is not None:
            from email.utils import parseaddr

            if "@" not in parseaddr(mail_from)[1]:
                _fail(f"--mail-from needs an e-mail address, got {mail_from!r}")
            shop.mail_from = mail_from
        if address is not None:
            shop.address = address
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


@shops_cli.command("sync-webhooks")
@click.option("--shop", "shop_domain", default=None, help="one shop (default: every installed shop)")
def shops_sync_webhooks(shop_domain: str | None) -> None:
    """Give each shop exactly the webhooks we handle (Shopify: subscriptions by API, fixed to the
    difference; WooCommerce: the webhooks not created yet). Safe to run again."""
    from sqlalchemy import select

    from app.models import Shop, ShopStatus
    from app.shops import ShopNeedsReauthorizationError, get_shop
    from connectors.errors import ConnectorError
    from jobs.shops import create_woocommerce_webhooks, sync_webhooks

    with session_scope() as session:
        if shop_domain:
            found = get_shop(session, shop_domain)
            shops = [(found.id, found.platform.value, found.domain)]
        else:
            shops = [(s.id, s.platform.value, s.domain) for s in session.scalars(
                select(Shop).where(Shop.status == ShopStatus.ACTIVE).order_by(Shop.id))]
    failed = 0
    for shop_id, platform, domain in shops:
        try:
            if platform == "shopify":
                result = sync_webhooks(shop_id)
                line = (f"created {len(result['created'])}, deleted {len(result['deleted'])}, "
                        f"kept {len(result['kept'])}")
            else:
                woo = create_woocommerce_webhooks(shop_id)
                line = f"created {len(woo['created'])}, already there {len(woo['present'])}"
        except (ConnectorError, ShopNeedsReauthorizationError) as exc:
            failed += 1
            click.echo(f"{domain}: not synced: {exc}")
            continue
        click.echo(f"{domain}: {line}")
    if failed:
        raise SystemExit(1)


@shops_cli.command("plugin-secret")
@click.option("--shop", "shop_domain", required=True, help="the WooCommerce store's base URL")
@click.option("--rotate", is_flag=True, help="make a new secret; the old one stops working at once")
@click.option("--push/--no-push", default=None,
              help="write the settings into the store's plugin through its REST API "
                   "(default: after --rotate, when the store connected through wc-auth)")
def shops_plugin_secret(shop_domain: str, rotate: bool, push: bool | None) -> None:
    """Show (making it on first use) or rotate the secret our WordPress plugin signs with, with
    the app address and shop id to enter on the plugin's settings page."""
    from app import shops, woo_plugin
    from app.shops import UnknownShopError, get_shop
    from connectors.errors import ConnectorError
    from jobs.shops import push_plugin_settings

    keys = current_app.config["ENCRYPTION_KEY"]
    with session_scope() as session:
        try:
            shop = get_shop(session, shop_domain, platform="woocommerce")
        except UnknownShopError as exc:
            _fail(str(exc))
        secret = woo_plugin.new_plugin_secret(shop, keys) if rotate else woo_plugin.ensure_plugin_secret(shop, keys)
        values = woo_plugin.plugin_settings(shop, secret, current_app.config["PUBLIC_URL"])
        shop_id, connected = shop.id, shops.has_api_credentials(shop, keys)
    click.echo(f"App address:   {values['stammkunde_app_url']}")
    click.echo(f"Shop id:       {values['stammkunde_shop_id']}")
    click.echo(f"Shared secret: {values['stammkunde_secret']}")
    if rotate:
        click.echo("The previous secret no longer works.")
    if push is None:
        push = rotate and connected
    if not push:
        return
    try:
        pushed = push_plugin_settings(shop_id)
    except ConnectorError as exc:
        _fail(f"not written into the store: {exc}; enter the values above on WooCommerce → Stammkunde")
    click.echo("Written into the store's plugin settings." if pushed else
               "The store has no active Stammkunde plugin: install it, then enter the values above "
               "on WooCommerce → Stammkunde.")


@shops_cli.command("backfill")
@click.option("--shop", "shop_domain", required=True, help="the shop's domain")
@click.option("--days", type=int, default=None,
              help="read the orders of the last N days; without --tiers-only, those paid in them earn points")
@click.option("--tiers-only", is_flag=True,
              help="no points: the history only sets tiers and lifetime spend (all of it, or the last --days)")
@_needs_redis
def shops_backfill(shop_domain: str, days: int | None, tiers_only: bool) -> None:
    """Bring the shop's order history in (resumes where a stopped run left off). Nothing is sent
    to customers about the past; the worker processes the orders, then each customer's tier is set."""
    from app.shops import get_shop
    from connectors.errors import ConnectorError
    from jobs import backfill

    with session_scope() as session:
        shop_id = get_shop(session, shop_domain).id
    try:
        row = backfill.start(shop_id, days=days, tiers_only=tiers_only)
    except backfill.BackfillError as exc:
        _fail(str(exc))
    click.echo(f"{shop_domain}: backfill ({'tiers and spend only' if row.mode == 'tiers' else 'points'}) of orders "
               f"created {'since ' + row.since.strftime('%Y-%m-%d %H:%M') + ' UTC' if row.since else 'ever'}"
               + (f", resumed at {row.orders_read} orders read" if row.orders_read else ""))
    bar_state: dict[str, Any] = {}

    def on_page(progress: backfill.Progress) -> None:
        bar = bar_state.get("bar")
        if bar is None and progress.orders_total:
            bar = bar_state["bar"] = click.progressbar(length=progress.orders_total, label="orders read",
                                                       show_pos=True)
            bar.__enter__()
            bar.update(progress.orders_read)
        elif bar is not None:
            bar.update(progress.orders_read - bar.pos)
        elif not progress.orders_total:
            click.echo(f"  {progress.orders_read} orders read", err=True)

    try:
        progress = backfill.run(shop_id, on_page=on_page)
    except ConnectorError as exc:
        _fail(f"{shop_domain}: the shop refused or did not answer ({exc}); run the command again to go on "
              "from where it stopped")
    finally:
        if "bar" in bar_state:
            bar_state["bar"].__exit__(None, None, None)
    from app.shop_health import backfill_line

    with session_scope() as session:
        click.echo(f"{shop_domain}: {backfill_line(session, shop_id)}")
    if progress.status == "processing":
        click.echo("  the worker is processing the orders; each customer's tier is set when it is done "
                   "(flask shops status shows how far it is)")


@shops_cli.command("sync-tiers")
@click.option("--shop", "shop_domain", required=True, help="the shop's domain")
@click.option("--restart", is_flag=True, help="start from the first member, not where a stopped run left off")
def shops_sync_tiers(shop_domain: str, restart: bool) -> None:
    """Write every member's tier to the shop again (Shopify customer tags, WooCommerce customer
    meta), page by page through the shop's cost limit; run it again to go on after a stop."""
    from app.shops import get_shop
    from connectors.errors import ConnectorError
    from jobs import tier_tags

    with session_scope() as session:
        shop_id = get_shop(session, shop_domain).id

    def on_page(progress: tier_tags.Progress) -> None:
        click.echo(f"  {progress.done}/{progress.total} members, {progress.written} written, "
                   f"{progress.failed} failed")

    try:
        progress = tier_tags.resync(shop_id, restart=restart, on_page=on_page)
    except tier_tags.TierSyncError as exc:
        _fail(f"{shop_domain}: tiers not written: {exc}")
    except ConnectorError as exc:
        _fail(f"{shop_domain}: the shop did not answer ({exc}); run the command again to go on from where it stopped")
    click.echo(f"{shop_domain}: tiers of {progress.done} members synced, {progress.written} written, "
               f"{progress.failed} failed" + (" (the customer pages say why)" if progress.failed else ""))


@shops_cli.command("status")
@click.option("--shop", "shop_domain", default=None, help="one shop (default: every shop)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--check/--no-check", default=True,
              help="make one cheap API call per shop to see that its credentials work (cached 15 min)")
def shops_status(shop_domain: str | None, as_json: bool, check: bool) -> None:
    """Each shop's health: installed, credentials, scopes, webhooks, token expiry, traffic, codes."""
    import json as json_lib

    from sqlalchemy import select

    from app.models import Shop
    from app.shop_health import check_credentials, shop_health
    from app.shops import get_shop
    from jobs.shops import check_credentials as call_platform

    keys = current_app.config["ENCRYPTION_KEY"]
    with session_scope() as session:
        ids = [get_shop(session, shop_domain).id] if shop_domain else list(
            session.scalars(select(Shop.id).order_by(Shop.id)))
    if check:
        for shop_id in ids:
            check_credentials(shop_id, keys=keys, check=call_platform)
    with session_scope() as session:
        report = [shop_health(session, session.get(Shop, shop_id), keys=keys) for shop_id in ids]
    if as_json:
        click.echo(json_lib.dumps(report, indent=2))
        return
    for health in report:
        state = "ok" if health["ok"] else "PROBLEMS: " + "; ".join(health["problems"])
        click.echo(f"{health['shop']} ({health['platform']}): {state}")
        click.echo(f"  installed {health['installed']}, credentials {health['credentials']}"
                   + (f" ({health['credentials_error']})" if health["credentials_error"] else ""))
        if health["scopes_granted"] or health["scopes_missing"]:
            click.echo(f"  scopes {','.join(health['scopes_granted']) or '-'}; missing {','.join(health['scopes_missing']) or 'none'}")
        hooks = health["webhooks"]
        click.echo(f"  webhooks {len(hooks)} registered, inactive: {', '.join(health['webhooks_inactive']) or 'none'}")
        if health["token_expires_at"]:
            click.echo(f"  token expires {health['token_expires_at']}, refresh token {health['refresh_token_expires_at']}")
        click.echo(f"  last reconciliation {health['last_reconciled_at'] or 'never'}, "
                   f"{health['reconciled_recovered']} events recovered")
        click.echo(f"  last delivery {health['last_delivery_at'] or 'never'}; codes waiting {health['codes_waiting']}, "
                   f"failed {health['codes_failed']}")
        click.echo(f"  backfill: {health['backfill'] or 'none'}")
        click.echo(f"  tiers in the shop: {health['tier_tags_pending']} waiting, {health['tier_tags_failed']} failed")


@customers_cli.command("show")
@click.option("--shop", "shop_domain", required=True, help="shop domain or base URL")
@click.option("--email", required=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def customers_show(shop_domain: str, email: str, as_json: bool) -> None:
    """Show a customer's balance, tier, referral code and the ledger explaining the balance."""
    from app.loyalty.explain import codes_of, customer_report

    with session_scope() as session:
        shop, customer = _shop_and_customer(session, shop_domain, email)
        report = customer_report(session, customer, shop=shop, public_url=current_app.config["PUBLIC_URL"])
        # Every code with its status: only "created" exists in the shop (never hand on another).
        report["codes"] = codes_of(session, customer)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    referral = report["referral_code"] or (
        f"- ({report['referral_code_status']})" if report["referral_code_status"] else "-")
    click.echo(f"{report['email']}: {report['available']} available, {report['pending']} pending, "
               f"tier {report['tier'] or '-'}, referral code {referral}")
    for code in report["codes"]:
        if code["status"] != "created":
            click.echo(f"  code {code['code']} ({code['purpose']}) does not exist in the shop: {code['status']}"
                       + (f": {code['error']}" if code["error"] else ""))
    for entry in report["ledger"]:
        click.echo(f"  {entry['delta']:+6d}  {entry['why']}")


@customers_cli.command("ban")
@click.option("--shop", "shop_domain", required=True)
@click.option("--email", required=True)
@click.option("--reason", required=True, help="why (shown to support staff)")
@click.option("--lift", is_flag=True, help="lift the ban instead")
def customers_ban(shop_domain: str, email: str, reason: str, lift: bool) -> None:
    """Ban a customer from earning, redeeming and codes (or lift the ban)."""
    from app import audit
    from app.models import utcnow

    with session_scope() as session:
        shop, customer = _shop_and_customer(session, shop_domain, email)
        before = {"banned": customer.banned_at is not None, "ban_reason": customer.ban_reason}
        customer.banned_at = None if lift else utcnow()
        customer.ban_reason = None if lift else reason
        # The ban history on the admin's customer page reads the audit log.
        audit.record(session, shop_id=shop.id, staff_id=None, staff_email="flask customers ban",
                     action="customer.unban" if lift else "customer.ban", subject=f"customer {customer.id}",
                     before=before, after={"banned": not lift, "ban_reason": customer.ban_reason})
    click.echo(f"{email}: {'ban lifted' if lift else 'banned'}")


@points_cli.command("import")
@click.option("--shop", "shop_domain", required=True, help="shop domain or base URL")
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV export of the previous loyalty app")
@click.option("--format", "fmt", default="auto", type=click.Choice(["auto", "smile", "loyaltylion", "yith", "generic"]),
              help="the export's layout (README: Importing balances)")
@click.option("--dry-run", is_flag=True, help="only report what would be imported")
@click.option("--by", "actor", default="cli", help="who ran the import (kept on each entry)")
def points_import(shop_domain: str, path: str, fmt: str, dry_run: bool, actor: str) -> None:
    """Bring balances over from the app the shop leaves: one `import` entry per customer, once."""
    from pathlib import Path

    from app.loyalty.imports import ImportFormatError, import_balances, read_balances
    from app.program import current_program
    from app.shops import get_shop

    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")  # older spreadsheet programs save "ANSI"
    try:
        rows, problems = read_balances(text, fmt)
    except ImportFormatError as exc:
        raise click.ClickException(str(exc)) from None
    with session_scope() as session:
        shop = get_shop(session, shop_domain)
        _, program = current_program(session, shop)
        report = import_balances(session, shop, program, rows, actor=actor, source=Path(path).name, dry_run=dry_run)
        problems = sorted([*problems, *report.problems], key=lambda p: p.line)
        if dry_run:
            session.rollback()
    verb = "would import" if dry_run else "imported"
    click.echo(f"{verb} {len(report.imported)} customers, {report.points} points; "
               f"{len(report.already)} imported before; {len(problems)} rows not imported")
    for problem in problems:
        click.echo(f"  line {problem.line}: {problem.email or '-'}: {problem.reason}")


@points_cli.command("adjust")
@click.option("--shop", "shop_domain", required=True)
@click.option("--email", required=True)
@click.option("--points", type=int, required=True, help="positive adds, negative removes")
@click.option("--reason", required=True)
@click.option("--by", "actor", default="cli", help="who made the adjustment")
def points_adjust(shop_domain: str, email: str, points: int, reason: str, actor: str) -> None:
    """Add or remove points with a reason (written to the ledger)."""
    import uuid

    from app.loyalty.ledger import AdjustmentError, adjust

    with session_scope() as session:
        shop, customer = _shop_and_customer(session, shop_domain, email)
        try:
            adjust(session, shop_id=shop.id, customer_id=customer.id, points=points, note=reason, actor=actor,
                   key=uuid.uuid4().hex)
        except AdjustmentError as exc:
            _fail(str(exc))
    click.echo(f"{email}: {points:+d} points ({reason})")


@program_cli.command("show")
@click.option("--shop", "shop_domain", required=True)
@click.option("--version", type=int, default=None, help="an earlier version (default: in force)")
def program_show(shop_domain: str, version: int | None) -> None:
    """Print the shop's program document as JSON."""
    from app.program import current_program, program_versions

    with session_scope() as session:
        shop, _ = _shop_and_customer(session, shop_domain, None)
        if version is None:
            number, program = current_program(session, shop)
            document = program.model_dump(mode="json")
        else:
            rows = {row.version: row for row in program_versions(session, shop)}
            if version not in rows:
                _fail(f"no version {version}; saved versions: {sorted(rows) or 'none (defaults in force)'}")
            number, document = version, rows[version].document
    click.echo(json.dumps({"version": number, "program": document}, indent=2, ensure_ascii=False))


@program_cli.command("set")
@click.option("--shop", "shop_domain", required=True)
@click.option("--file", "path", type=click.File("r"), required=True, help="program JSON ('-' for stdin)")
@click.option("--by", "actor", default="cli")
def program_set(shop_domain: str, path, actor: str) -> None:  # type: ignore[no-untyped-def]
    """Validate and apply a program document (nothing applied on error); older versions are kept."""
    from app.program import ProgramError, save_program

    try:
        document = json.load(path)
    except ValueError as exc:
        _fail(f"not JSON: {exc}")
    if isinstance(document, dict) and set(document) == {"version", "program"}:
        document = document["program"]  # accept what `program show` prints
    with session_scope() as session:
        shop, _ = _shop_and_customer(session, shop_domain, None)
        try:
            row = save_program(session, shop, document, created_by=actor)
        except ProgramError as exc:
            _fail(f"program not applied: {exc}")
        click.echo(f"program version {row.version} is in force for {shop.domain}")


@rewards_cli.command("redeem")
@click.option("--shop", "shop_domain", required=True)
@click.option("--email", required=True)
@click.option("--reward", "reward_name", required=True, help="the reward's name in the program")
@click.option("--by", "actor", default="cli")
@click.option("--json", "as_json", is_flag=True)
@_needs_redis
def rewards_redeem(shop_domain: str, email: str, reward_name: str, actor: str, as_json: bool) -> None:
    """Redeem a reward for a customer as support staff would."""
    from app.loyalty.redemptions import RedemptionError, redeem, redemptions_of

    with session_scope() as session:
        shop, customer = _shop_and_customer(session, shop_domain, email)
        try:
            redemption = redeem(session, shop, customer, reward_name, source="staff", actor=actor)
        except RedemptionError as exc:
            _fail(str(exc))
        redemption_id = redemption.id
    with session_scope() as session:
        _shop, customer = _shop_and_customer(session, shop_domain, email)
        result = next(r for r in redemptions_of(session, customer) if r["redemption"] == redemption_id)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        click.echo(f"redemption {result['redemption']}: {result['reward']} ({result['status']})")


@rewards_cli.command("show")
@click.option("--shop", "shop_domain", required=True)
@click.option("--email", required=True)
@click.option("--json", "as_json", is_flag=True)
def rewards_show(shop_domain: str, email: str, as_json: bool) -> None:
    """List a customer's redemptions and their codes."""
    from app.loyalty.redemptions import redemptions_of

    with session_scope() as session:
        _shop, customer = _shop_and_customer(session, shop_domain, email)
        rows = redemptions_of(session, customer)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['redemption']}\t{row['reward']}\t{row['status']}\t{row['code'] or '-'}")


@staff_cli.command("create")
@click.option("--email", required=True)
@click.password_option(help="at least 12 characters (prompted when not given)")
@click.option("--admin", is_flag=True, help="administrator: owner of every shop, present and future")
@click.option("--shop", "shop_domain", default=None, help="give the account a role in this shop")
@click.option("--role", type=click.Choice(["owner", "support"]), default="support", show_default=True)
@click.option("--adjust-limit", type=click.IntRange(min=0), default=500, show_default=True,
              help="support: the most points one adjustment may add or remove")
def staff_create(email: str, password: str, admin: bool, shop_domain: str | None, role: str,
                 adjust_limit: int) -> None:
    """Create a staff log-in for the admin page (or set a new password), with a role in a shop or as administrator."""
    from app.models import StaffRole
    from app.web.staff import create_staff, grant_role

    if not admin and shop_domain is None:
        _fail("say what the account may do: --admin (every shop) or --shop S [--role owner|support]")
        return
    with session_scope() as session:
        try:
            user = create_staff(session, email, password, admin=admin)
        except ValueError as exc:
            _fail(str(exc))
            return
        if shop_domain is not None:
            shop, _ = _shop_and_customer(session, shop_domain, None)
            grant_role(session, shop_id=shop.id, staff_id=user.id, role=StaffRole(role),
                       adjust_limit=adjust_limit if role == "support" else 0, granted_by="flask staff create")
            click.echo(f"staff user {user.email} is {role} of {shop.domain} and can log in at /admin/")
        else:
            click.echo(f"staff user {user.email} is an administrator (every shop) and can log in at /admin/")


@deliveries_cli.command("replay")
@click.argument("delivery_id", type=int)
@_needs_redis
def deliveries_replay(delivery_id: int) -> None:
    """Put a delivery back in the queue."""
    from jobs.deliveries import DeliveryPurgedError, replay_delivery

    try:
        found = replay_delivery(delivery_id)
    except DeliveryPurgedError as exc:
        _fail(str(exc))
    if not found:
        _fail(f"no delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} queued")


@deliveries_cli.command("requeue")
@click.option("--older-than", default=None, type=int, help="seconds (default REQUEUE_AFTER_SECONDS)")
@_needs_redis
def deliveries_requeue(older_than: int | None) -> None:
    """Enqueue deliveries still waiting (what the clock's sweep does)."""
    from jobs.deliveries import requeue_stuck_deliveries

    click.echo(f"{requeue_stuck_deliveries(older_than)} deliveries queued")


@click.command("sweep")
@_needs_redis
def sweep() -> None:
    """Run every scheduled sweep once, now (the same code the clock triggers)."""
    from jobs.codes import requeue_pending
    from jobs.deliveries import requeue_stuck_deliveries
    from jobs.points import mature_points
    from jobs.members import review_tiers, settle_referrals
    from jobs.points import expire_points

    click.echo(f"requeued deliveries: {requeue_stuck_deliveries()}")
    click.echo(f"requeued codes and order tasks: {requeue_pending()}")
    click.echo(f"lots made available: {mature_points()}")
    click.echo(f"lots expired: {expire_points()}")
    click.echo(f"tier reviews with a change: {review_tiers()}")
    click.echo(f"referrals settled: {settle_referrals()}")
    from jobs.tier_tags import requeue_tier_tags

    click.echo(f"shops with member tiers to write, syncs queued: {requeue_tier_tags()}")


@reminders_cli.command("sweep")
@click.option("--at", "at", default=None, help="ISO-8601 time to sweep as of (default: now)")
@_needs_redis
def reminders_sweep(at: str | None) -> None:
    """Run every reminder sweep once (what the clock triggers) and print what it enqueued."""
    from datetime import datetime, timezone

    from jobs.reminders import sweep_reminders

    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            _fail(f"--at {at!r} is not an ISO-8601 time")
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        at = when.astimezone(timezone.utc).isoformat()
    result = sweep_reminders(at)
    created = ", ".join(f"{k} {v}" for k, v in sorted(result["created"].items()) if v) or "none"
    click.echo(f"new messages: {created}")
    click.echo(f"due: {result['due']}, send jobs enqueued: {result['enqueued']}")


@reminders_cli.command("show")
@click.option("--shop", "shop_domain", required=True)
@click.option("--email", required=True)
@click.option("--json", "as_json", is_flag=True)
def reminders_show(shop_domain: str, email: str, as_json: bool) -> None:
    """List what was sent to a customer, and what was suppressed or deferred and why."""
    from app.messaging.reminders import history

    with session_scope() as session:
        _shop, customer = _shop_and_customer(session, shop_domain, email)
        rows = history(session, customer)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['time']}\t{row['campaign']}#{row['step']}\t{row['status']}\t{row['reason'] or ''}")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (what the Procfile release phase runs)."""
    from app.migrate import upgrade

    upgrade(current_app.config["DATABASE_URL"])
    click.echo("database is up to date")


@click.command("backup")
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the new file to write the copy to")
@with_appcontext
def backup(target: Path) -> None:
    """Copy the SQLite database to a new file, consistent while the app runs (PostgreSQL: pg_dump)."""
    from app.backup import BackupError, backup_sqlite

    try:
        size = backup_sqlite(current_app.config["DATABASE_URL"], target)
    except BackupError as exc:
        _fail(str(exc))
    click.echo(f"backed up to {target} ({size} bytes, integrity check ok)")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    from app.web.cli_reports import report_cli
    from app.web.demo import demo

    app.cli.add_command(report_cli)
    for command in (shops_cli, customers_cli, staff_cli, deliveries_cli, db_cli, program_cli, rewards_cli,
                    points_cli, reminders_cli, sweep, demo, backup):
        app.cli.add_command(command)
