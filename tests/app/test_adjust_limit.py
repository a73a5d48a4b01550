"""Manual adjustments are bounded (ledger.MAX_ADJUSTMENT either way), in the admin and the CLI alike."""

from __future__ import annotations

import pytest

from app.loyalty.ledger import MAX_ADJUSTMENT
from tests import factories
from tests.app.test_admin import KUNDIN, _customer_page, _customer_with_points, _flashes, _form, _signed_in
from tests.conftest import SHOPIFY_DOMAIN

TOO_MANY = [
    ("twenty digits", "99999999999999999999"),
    ("a billion", "1000000000"),
    ("one over the limit", str(MAX_ADJUSTMENT + 1)),
    ("one under minus the limit", str(-MAX_ADJUSTMENT - 1)),
]


def _adjustments(shop_id: int) -> list[int]:
    return [e["delta"] for e in factories.report(shop_id, KUNDIN)["ledger"] if e["reason"] == "adjust"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, points", TOO_MANY)
def test_admin_refuses_adjustments_beyond_the_limit(_case, points, client, session, make_shop):
    # given a customer with 600 points, and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    page = _customer_page(client, customer_id)
    form = _form(page, "adjust-form")

    # when an adjustment beyond the limit is posted
    response = client.post(f"/admin/customers/{customer_id}/adjust", data={**form, "points": points, "reason": "Tippfehler"})

    # then it is a form error naming the limit, not a server error, and nothing changed
    assert response.status_code == 302
    assert "at most 1 000 000 points either way" in _flashes(client, customer_id)
    assert _adjustments(shop_id) == []
    assert factories.report(shop_id, KUNDIN)["available"] == 600
    # and the form itself says the limit
    assert f'min="-{MAX_ADJUSTMENT}" max="{MAX_ADJUSTMENT}"' in page


def test_admin_accepts_the_limit_itself(client, session, make_shop):
    # given a customer and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), "adjust-form")

    # when exactly the limit is added
    client.post(f"/admin/customers/{customer_id}/adjust", data={**form, "points": str(MAX_ADJUSTMENT), "reason": "Kulanz"})

    # then it is recorded
    assert _adjustments(shop_id) == [MAX_ADJUSTMENT]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, points", TOO_MANY)
def test_cli_refuses_adjustments_beyond_the_limit(_case, points, runner, make_shop):
    # given a customer with 600 points
    shop_id, _customer_id = _customer_with_points(make_shop)

    # when support adjusts beyond the limit on the command line
    result = runner.invoke(args=["points", "adjust", "--shop", SHOPIFY_DOMAIN, "--email", KUNDIN, "--points", points,
                                 "--reason", "Tippfehler"])

    # then one clear line, exit 1, and nothing changed
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: an adjustment is at most 1 000 000 points either way, got {int(points):+,}".replace(",", " ")]
    assert _adjustments(shop_id) == []
