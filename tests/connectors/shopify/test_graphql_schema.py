"""Every document and every variables dict the Shopify client sends is valid for the pinned schema.

The schema is Shopify's 2026-07 Admin schema from a live introspection (see
tests/fixtures/shopify_admin_graphql/README.md). It is built once per session: the SDL is 3.8 MB.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    get_nullable_type,
    parse,
    specified_rules,
    type_from_ast,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.validation import NoDeprecatedCustomRule

from connectors.shopify import client, consts
from connectors.types import DiscountSpec

SCHEMA_FILE = (
    Path(__file__).resolve().parents[2] / "fixtures" / "shopify_admin_graphql" / "schema.graphql"
)
SCHEMA_SHA256 = "8e4613f46a91ed9e5ee43a4c1f5228adcf302def2e6916d1982d55682f84f52e"
RULES = [*specified_rules, NoDeprecatedCustomRule]


@pytest.fixture(scope="session")
def schema() -> GraphQLSchema:
    """The pinned Admin schema. `assume_valid`: graphql-core 3.3 rejects four real Shopify fields
    (deprecated implementations of non-deprecated interface fields), see the fixture README."""
    sdl = SCHEMA_FILE.read_text(encoding="utf-8")
    return build_schema(sdl, assume_valid=True, no_location=True)


def spec(**changes: Any) -> DiscountSpec:
    """Return a reward spec; `changes` override the defaults."""
    fields: dict[str, Any] = {
        "code": "SK-7F3A9C",
        "title": "Stammkunde reward",
        "kind": "percentage",
        "value": Decimal("15"),
        "currency": "EUR",
        "starts_at": datetime(2026, 7, 1, 9, 30, tzinfo=timezone.utc),
    }
    fields.update(changes)
    return DiscountSpec(**fields)


def operation(document: str) -> OperationDefinitionNode:
    """Return the single operation of a document (the order documents add fragments)."""
    (definition,) = [d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode)]
    return definition


def coerce(schema: GraphQLSchema, document: str, variables: dict[str, Any]) -> list[str]:
    """Coerce variables as sent on the wire (JSON round trip); return the error messages."""
    wire = json.loads(json.dumps(variables))
    result = get_variable_values(schema, operation(document).variable_definitions or (), wire)
    return [error.message for error in result] if isinstance(result, list) else []


def deprecated_inputs(schema: GraphQLSchema, document: str, variables: dict[str, Any]) -> list[str]:
    """Return the paths of deprecated input fields and enum values used in `variables`.

    NoDeprecatedCustomRule sees only literals in the document; most input travels in variables.
    """
    found: list[str] = []

    def walk(type_: Any, value: Any, path: str) -> None:
        type_ = get_nullable_type(type_)
        if isinstance(type_, GraphQLList) and isinstance(value, list):
            for index, item in enumerate(value):
                walk(type_.of_type, item, f"{path}[{index}]")
        elif isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
            for key, item in value.items():
                field = type_.fields.get(key)
                if field is None:
                    continue  # unknown fields are coerce()'s business
                if field.deprecation_reason:
                    found.append(f"{path}.{key}")
                walk(field.type, item, f"{path}.{key}")
        elif isinstance(type_, GraphQLEnumType) and isinstance(value, str):
            enum_value = type_.values.get(value)
            if enum_value is not None and enum_value.deprecation_reason:
                found.append(f"{path}={value}")

    for definition in operation(document).variable_definitions or ():
        name = definition.variable.name.value
        if name in variables:
            walk(type_from_ast(schema, definition.type), variables[name], name)
    return found


VARIABLE_CASES = [
    ("credentials check", client.shop_check_variables),
    ("orders changed since, first page (reconciliation)", lambda: client.orders_page_variables(
        client.orders_query(updated_after=datetime(2026, 11, 22, 11, 50, tzinfo=timezone.utc)), None)),
    ("orders created in a window, next page (backfill)", lambda: client.orders_page_variables(
        client.orders_query(created_from=datetime(2026, 9, 1, tzinfo=timezone.utc),
                            created_before=datetime(2026, 11, 22, 12, tzinfo=timezone.utc)),
        "eyJsYXN0X2lkIjo0NTA3ODk0Njl9", sort_key="CREATED_AT")),
    ("the rest of an order's lines", lambda: client.order_lines_variables("gid://shopify/Order/450789469",
                                                                          "eyJsYXN0X2lkIjoxMH0=")),
    ("an order's refunds again", lambda: client.order_refunds_variables("450789469")),
    ("orders of a backfill counted", lambda: client.orders_count_variables(
        client.orders_query(created_from=datetime(2026, 9, 1, tzinfo=timezone.utc),
                            created_before=datetime(2026, 11, 22, 12, tzinfo=timezone.utc)))),
    ("webhook subscriptions, first page", lambda: client.webhook_list_variables(None)),
    ("webhook subscriptions, next page", lambda: client.webhook_list_variables("eyJsYXN0X2lkIjoxfQ==")),
    ("webhook subscription deleted",
     lambda: client.webhook_delete_variables("gid://shopify/WebhookSubscription/4759306")),
    *[(f"webhook subscription for {topic}",
       lambda topic=topic: client.webhook_subscription_variables(topic, "https://loyalty.example/webhooks/shopify"))
      for topic in consts.SUBSCRIPTION_TOPICS.values()],
    ("percentage for everyone", lambda: client.discount_code_variables(spec())),
    (
        "percentage for one customer with a minimum",
        lambda: client.discount_code_variables(
            spec(customer_id="207119551", minimum_amount=Decimal("50.00"),
                 ends_at=datetime(2026, 12, 31, tzinfo=timezone.utc))
        ),
    ),
    (
        "fixed amount for everyone, unlimited",
        lambda: client.discount_code_variables(
            spec(kind="fixed_amount", value=Decimal("10.00"), usage_limit=None)
        ),
    ),
    (
        "fixed amount for one customer with a minimum",
        lambda: client.discount_code_variables(
            spec(kind="fixed_amount", value=Decimal("5"), customer_id="207119551",
                 minimum_amount=Decimal("25"))
        ),
    ),
    (
        "free product by product and variant",
        lambda: client.discount_code_variables(
            spec(kind="free_product", value=Decimal("0"), product_ids=("632910392",),
                 variant_ids=("39072856",), customer_id="207119551")
        ),
    ),
    (
        "free product by variant only",
        lambda: client.discount_code_variables(
            spec(kind="free_product", value=Decimal("0"), variant_ids=("39072856",))
        ),
    ),
    (
        "free shipping for everyone",
        lambda: client.discount_code_variables(spec(kind="free_shipping", value=Decimal("0"))),
    ),
    (
        "free shipping for one customer with a minimum",
        lambda: client.discount_code_variables(
            spec(kind="free_shipping", value=Decimal("0"), customer_id="207119551",
                 minimum_amount=Decimal("30.00"), ends_at=datetime(2026, 8, 1, tzinfo=timezone.utc))
        ),
    ),
    ("lookup by code", lambda: client.discount_lookup_variables("SK-7F3A9C")),
    (
        "combination offer for one customer: buy 2 of a product, get a variant free",
        lambda: client.discount_code_variables(
            spec(kind="buy_x_get_y", value=Decimal("100"), customer_id="207119551",
                 buys_product_ids=("632910392",), buys_quantity=2, variant_ids=("39072856",), gets_quantity=1,
                 ends_at=datetime(2026, 8, 1, tzinfo=timezone.utc))
        ),
    ),
    (
        "combination offer: buy 3 of two variants, get 2 of a product half price",
        lambda: client.discount_code_variables(
            spec(kind="buy_x_get_y", value=Decimal("50"), customer_id="207119551",
                 buys_variant_ids=("39072856", "39072857"), buys_quantity=3, product_ids=("632910392",),
                 gets_quantity=2)
        ),
    ),
    (
        "lasting tier perk: no use limits, ends with the tier period",
        lambda: client.discount_code_variables(
            spec(customer_id="207119551", usage_limit=None, once_per_customer=False,
                 ends_at=datetime(2027, 7, 1, tzinfo=timezone.utc))
        ),
    ),
    (
        "lasting referral-step member code: no use limits, no end",
        lambda: client.discount_code_variables(
            spec(customer_id="207119551", usage_limit=None, once_per_customer=False, value=Decimal("5"))
        ),
    ),
    (
        "lasting free-shipping perk",
        lambda: client.discount_code_variables(
            spec(kind="free_shipping", value=Decimal("0"), customer_id="207119551",
                 usage_limit=None, once_per_customer=False,
                 ends_at=datetime(2027, 7, 1, tzinfo=timezone.utc))
        ),
    ),
    (
        "deactivate a code discount",
        lambda: client.discount_deactivate_variables("gid://shopify/DiscountCodeNode/1057371231"),
    ),
    (
        "read a code discount's uses (bounce-back withdrawal)",
        lambda: client.discount_usage_variables("gid://shopify/DiscountCodeNode/1057371231"),
    ),
    (
        "delete a code discount (bounce-back withdrawal)",
        lambda: client.discount_delete_variables("1057371231"),
    ),
    (
        "bounce-back code: fixed amount for one customer, once, with a minimum order and an end",
        lambda: client.discount_code_variables(
            spec(code="DANKE-7K2M9QX4TB", kind="fixed_amount", value=Decimal("5"), customer_id="207119551",
                 minimum_amount=Decimal("20"), usage_limit=1, once_per_customer=True,
                 ends_at=datetime(2026, 8, 1, 9, 30, tzinfo=timezone.utc))
        ),
    ),
    (
        "tags on an order",
        lambda: client.order_tags_variables("450789469", ["stammkunde", "reward"]),
    ),
    (
        "a member's tier tag on a customer",
        lambda: client.customer_tags_variables("tagsAdd", "207119551",
                                               [client.tier_label("Gold", prefix="Stammkunde")]),
    ),
    (
        "our old tier tag off a customer",
        lambda: client.customer_tags_variables("tagsRemove", "gid://shopify/Customer/207119551", ["Stammkunde Silber"]),
    ),
    (
        "store credit reward with an expiry",
        lambda: client.store_credit_variables(spec(kind="store_credit", value=Decimal("5.00"), customer_id="207119551",
                                                   ends_at=datetime(2026, 8, 1, tzinfo=timezone.utc))),
    ),
    (
        "store credit reward without an expiry",
        lambda: client.store_credit_variables(spec(kind="store_credit", value=Decimal("10"),
                                                   customer_id="gid://shopify/Customer/207119551")),
    ),
    (
        "the tags and collections of an order's products (earning by product)",
        lambda: client.product_facts_variables(["632910392", "gid://shopify/Product/921728736"]),
    ),
    (
        "25 customer metafields",
        lambda: client.metafields_variables([
            client.MetafieldValue(owner=f"gid://shopify/Customer/{n}", namespace="stammkunde", key=key,
                                  type=kind, value=value)
            for n in range(5)
            for key, kind, value in (("points", "number_integer", "600"), ("pending_points", "number_integer", "0"),
                                     ("tier", "single_line_text_field", "Silber"),
                                     ("next_reward", "single_line_text_field", "5 € Rabatt"),
                                     ("next_reward_points", "number_integer", "120"))
        ]),
    ),
]


def test_schema_file_is_the_pinned_capture():
    # given the fixture bytes
    data = SCHEMA_FILE.read_bytes()

    # then they are the recorded capture, for the API version the client pins
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256
    assert data.startswith(f"# Shopify Admin GraphQL {consts.API_VERSION}\n".encode())


@pytest.mark.parametrize("_case", sorted(client.DOCUMENTS))
def test_document_is_valid_and_uses_nothing_deprecated(schema: GraphQLSchema, _case: str):
    # given a document the client sends
    document = client.DOCUMENTS[_case]

    # when it is validated with the deprecation rule on
    errors = validate(schema, parse(document), rules=RULES)

    # then there is nothing to report
    assert [error.message for error in errors] == []


@pytest.mark.parametrize(("_case", "build"), VARIABLE_CASES)
def test_variables_coerce_against_the_schema(schema: GraphQLSchema, _case: str, build: Any):
    # given the variables the client builds for a case
    name, variables = build()

    # when they are coerced against the operation's variable definitions
    errors = coerce(schema, client.DOCUMENTS[name], variables)

    # then they are accepted and use no deprecated input
    assert errors == []
    assert deprecated_inputs(schema, client.DOCUMENTS[name], variables) == []


def test_every_document_has_a_variables_case():
    # given the documents named by the variable cases
    covered = {build()[0] for _case, build in VARIABLE_CASES}

    # then every document is covered
    assert covered == set(client.DOCUMENTS)


def test_validation_catches_a_deprecated_input_literal(schema: GraphQLSchema):
    # given the basic-create mutation with the deprecated customerSelection as a literal
    document = """
    mutation {
      discountCodeBasicCreate(basicCodeDiscount: {code: "X", customerSelection: {all: true}}) {
        userErrors { message }
      }
    }
    """

    # when it is validated
    errors = validate(schema, parse(document), rules=RULES)

    # then the deprecated field is reported
    assert len(errors) == 1
    assert "customerSelection" in errors[0].message
    assert "deprecated" in errors[0].message


def test_validation_catches_an_unknown_field(schema: GraphQLSchema):
    # given a document selecting a field the payload does not have
    document = client.DOCUMENTS["tagsAdd"].replace("node {", "order {")

    # when it is validated
    errors = validate(schema, parse(document), rules=RULES)

    # then the field is reported
    assert any("Cannot query field 'order'" in error.message for error in errors)


def test_coercion_catches_a_misspelt_input_field(schema: GraphQLSchema):
    # given built variables with `context` misspelt
    name, variables = client.discount_code_variables(spec())
    variables["basicCodeDiscount"]["contxt"] = variables["basicCodeDiscount"].pop("context")

    # when they are coerced
    errors = coerce(schema, client.DOCUMENTS[name], variables)

    # then the misspelling is reported
    assert any("'contxt'" in message and "'context'" in message for message in errors)


def test_coercion_catches_a_wrong_scalar(schema: GraphQLSchema):
    # given built variables with the percentage sent as a string
    name, variables = client.discount_code_variables(spec())
    variables["basicCodeDiscount"]["customerGets"]["value"]["percentage"] = "0.15"

    # when they are coerced
    errors = coerce(schema, client.DOCUMENTS[name], variables)

    # then the Float is reported
    assert any("Float cannot represent" in message for message in errors)


def test_deprecated_input_in_variables_is_caught(schema: GraphQLSchema):
    # given built variables that use the deprecated customerSelection instead of context
    name, variables = client.discount_code_variables(spec())
    variables["basicCodeDiscount"].pop("context")
    variables["basicCodeDiscount"]["customerSelection"] = {"all": True}

    # when they are checked (they still coerce: the field exists)
    errors = coerce(schema, client.DOCUMENTS[name], variables)
    deprecated = deprecated_inputs(schema, client.DOCUMENTS[name], variables)

    # then only the deprecation check catches it
    assert errors == []
    assert deprecated == ["basicCodeDiscount.customerSelection"]


@pytest.mark.parametrize(("_case", "name", "data"), [
    ("unused code discount", "discountCodeUsage", "UNUSED"),
    ("used code discount", "discountCodeUsage", "USED"),
    ("no such node", "discountCodeUsage", "GONE"),
    ("deleted", "discountCodeDelete", "DELETED"),
])
def test_withdraw_answers_are_what_the_schema_gives(schema: GraphQLSchema, _case: str, name: str, data: str):
    # given the answer test_client.py mocks for a bounce-back withdrawal
    from graphql import graphql_sync

    from tests.connectors.shopify import test_client

    answer = getattr(test_client, data)
    # (the node's type is not in the answer, as the document does not ask for it: told here)
    root = {**answer, "node": {**answer["node"], "__typename": "DiscountCodeNode"}} if answer.get("node") else answer

    # when the document is executed against the pinned schema with that answer as its data
    result = graphql_sync(schema, client.DOCUMENTS[name], root_value=root, variable_values={"id": test_client.NODE_ID},
                          type_resolver=lambda value, _info, _type: value["__typename"])

    # then the schema accepts and returns exactly that shape
    assert result.errors is None
    assert result.data == answer


def test_tier_tag_requests_as_sent_are_valid(schema: GraphQLSchema):
    # given Shopify takes every tag change
    import responses

    url = f"https://demo-laden.myshopify.com/admin/api/{consts.API_VERSION}/graphql.json"
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        for root in ("tagsAdd", "tagsRemove"):
            mock.add(responses.POST, url, json={"data": {root: {"node": {"id": "gid://shopify/Customer/1"},
                                                                "userErrors": []}}})
        # when a member moves from Silber to Gold
        client.set_customer_tier({"shop": "demo-laden.myshopify.com", "access_token": "shpat_x"}, "207119551",
                                 client.tier_label("Gold", prefix="Stammkunde"), previous="Stammkunde Silber")
        bodies = [json.loads(call.request.body) for call in mock.calls]

    # then both requests, exactly as sent, are valid for the pinned schema
    assert [operation(b["query"]).name.value for b in bodies] == ["TagsAdd", "TagsRemove"]
    for body in bodies:
        assert [e.message for e in validate(schema, parse(body["query"]), rules=RULES)] == []
        assert coerce(schema, body["query"], body["variables"]) == []
