"""`flask report ...`: the owner's reports from the shell (the same domain functions as the admin)."""

from __future__ import annotations

import sys
from datetime import date

import click
from flask.cli import AppGroup

from app.db import session_scope

report_cli = AppGroup("report", help="Owner reports: outstanding points (the liability).")


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD") from None


@report_cli.command("liability")
@click.option("--shop", "shop_domain", required=True, help="The shop's domain (as registered).")
@click.option("--at", "at_day", required=True, help="YYYY-MM-DD: the position at the end of that day, shop time.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def liability(shop_domain: str, at_day: str, fmt: str) -> None:
    """Print the points outstanding at the end of a day: pending and available, their value in
    money, age buckets and what expires in which month."""
    from app.loyalty import reports
    from app.shops import UnknownShopError, get_shop

    day = _day(at_day)
    with session_scope() as session:
        try:
            shop = get_shop(session, shop_domain)
        except UnknownShopError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        report = reports.outstanding_points(session, shop, reports.end_of_day(shop, day))
    if fmt == "csv":
        click.echo(reports.liability_csv(report), nl=False)
        return
    if fmt == "json":
        click.echo(reports.liability_json(report))
        return
    click.echo(f"Outstanding points of {report.shop_domain} at the end of {day.isoformat()} "
               f"({report.timezone}; {report.at.isoformat()} UTC)")
    click.echo(report.point_value.explain())
    width = max(len(row[1]) for row in reports.liability_rows(report))
    section = None
    for name, item, points, value, currency in reports.liability_rows(report):
        if name == "summary":
            continue
        if name != section:
            click.echo(f"\n{name}")
            section = name
        money = f"{value} {currency}" if value else ("—" if report.point_value.amount is None else "")
        click.echo(f"  {item:<{width}}  {points:>12}  {money}")
