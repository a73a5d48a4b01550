"""The command-line contracts scripts and support staff rely on."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import Shop


def test_shops_add_prints_the_id_and_updates_on_rerun(runner):
    # when a shop is added, and added again with a new currency and secret
    first = runner.invoke(args=["shops", "add", "--platform", "woocommerce", "--domain", "https://Shop.Example/",
                                "--webhook-secret", "s1", "--consumer-key", "ck", "--consumer-secret", "cs"])
    second = runner.invoke(args=["shops", "add", "--platform", "woocommerce", "--domain", "https://shop.example",
                                 "--webhook-secret", "rotated-webhook-secret", "--currency", "chf"])

    # then both print the same id, and the shop was updated (secret rotated, not duplicated)
    assert first.exit_code == second.exit_code == 0
    assert first.stdout.strip() == second.stdout.strip()
    with session_scope() as s:
        [shop] = s.scalars(select(Shop)).all()
        assert (shop.domain, shop.currency) == ("https://shop.example", "CHF")
        assert shop.webhook_secret_old_enc is not None
        assert b"rotated-webhook-secret" not in shop.webhook_secret_enc  # stored encrypted


@pytest.mark.sqlite_only
def test_shops_add_rejects_half_credentials(runner):
    # when only a consumer key is given
    result = runner.invoke(args=["shops", "add", "--platform", "woocommerce", "--domain", "https://x.example",
                                 "--consumer-key", "ck"])

    # then a clear error
    assert result.exit_code == 1 and "go together" in result.output


@pytest.mark.sqlite_only
def test_program_set_validates_applies_and_keeps_versions(make_shop, runner, tmp_path):
    # given a shop and a program file with one bad field
    make_shop("shopify")
    shown = json.loads(runner.invoke(args=["program", "show", "--shop", "demo-laden.myshopify.com"]).output)
    assert shown["version"] == 0
    bad = dict(shown["program"], earning={**shown["program"]["earning"], "points_per_unit": "-2"})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    good = dict(shown["program"], earning={**shown["program"]["earning"], "points_per_unit": "2"})
    (tmp_path / "good.json").write_text(json.dumps(shown | {"program": good}))

    # when the bad and then the good file are set
    rejected = runner.invoke(args=["program", "set", "--shop", "demo-laden.myshopify.com", "--file",
                                   str(tmp_path / "bad.json")])
    accepted = runner.invoke(args=["program", "set", "--shop", "demo-laden.myshopify.com", "--file",
                                   str(tmp_path / "good.json")])

    # then the error names the field and nothing was applied; the good one is version 1
    assert rejected.exit_code == 1 and "earning.points_per_unit" in rejected.output
    assert accepted.exit_code == 0 and "version 1" in accepted.output
    now = json.loads(runner.invoke(args=["program", "show", "--shop", "demo-laden.myshopify.com"]).output)
    assert (now["version"], now["program"]["earning"]["points_per_unit"]) == (1, "2")
    old = runner.invoke(args=["program", "show", "--shop", "demo-laden.myshopify.com", "--version", "2"])
    assert old.exit_code == 1 and "saved versions: [1]" in old.output


@pytest.mark.sqlite_only
def test_rewards_redeem_refuses_clearly(make_shop, runner):
    # given a customer with no points
    from tests.factories import apply, order, program

    shop = make_shop("shopify")
    program(shop, {"earning": {"return_window_days": 0}})
    apply(shop, order("1", "1.00"))

    # when support tries to redeem the 500-point reward, or an unknown one
    poor = runner.invoke(args=["rewards", "redeem", "--shop", "demo-laden.myshopify.com", "--email",
                               "kundin@example.test", "--reward", "5 € Rabatt", "--json"])
    unknown = runner.invoke(args=["rewards", "redeem", "--shop", "demo-laden.myshopify.com", "--email",
                                  "kundin@example.test", "--reward", "Mond", "--json"])

    # then exit 1 with the reason
    assert poor.exit_code == 1 and "not enough points: 1 available" in poor.output
    assert unknown.exit_code == 1 and "no active reward called 'Mond'" in unknown.output


@pytest.mark.sqlite_only
def test_shops_add_sets_the_e_mail_identity(runner):
    # when a shop is added with sender, colour and imprint line, and with a bad colour
    ok = runner.invoke(args=["shops", "add", "--platform", "shopify", "--domain", "laden.myshopify.com",
                             "--mail-from", "Laden <hallo@laden.example>", "--brand-color", "#aa3300",
                             "--address", "Laden GmbH · Weg 1 · 10115 Berlin"])
    bad = runner.invoke(args=["shops", "add", "--platform", "shopify", "--domain", "laden.myshopify.com",
                              "--brand-color", "red"])

    # then the e-mails use them, and the bad colour is refused
    assert ok.exit_code == 0 and bad.exit_code == 1 and "#2f6f4f" in bad.output
    with session_scope() as s:
        shop = s.scalars(select(Shop)).one()
        assert (shop.mail_from, shop.brand_color) == ("Laden <hallo@laden.example>", "#aa3300")
