"""Shopify topic strings, header names and the pinned Admin API version.

Header names: Shopify/shopify-app-js `packages/apps/shopify-api/lib/types.ts` (enums
`ShopifyHeader` and `ShopifyEventsHeader`). Classic webhooks send `X-Shopify-*`; the newer "events"
webhooks send the same values un-prefixed (`shopify-*`). Each tuple lists both forms, classic first.
"""

from __future__ import annotations

PLATFORM = "shopify"

# https://shopify.dev/docs/api/usage/versioning
API_VERSION = "2026-07"

# Admin GraphQL endpoint and its auth header (https://shopify.dev/docs/api/admin-graphql#endpoints).
ADMIN_GRAPHQL_URL = "https://{shop}/admin/api/{version}/graphql.json"
ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"

# Topics, verbatim (https://shopify.dev/docs/api/webhooks).
ORDERS_CREATE = "orders/create"
ORDERS_PAID = "orders/paid"
ORDERS_UPDATED = "orders/updated"
ORDERS_CANCELLED = "orders/cancelled"
REFUNDS_CREATE = "refunds/create"
# The order's payments and refunds, one per transaction: how much a gift card paid.
# https://shopify.dev/docs/api/admin-rest/latest/resources/transaction
ORDER_TRANSACTIONS_CREATE = "order_transactions/create"
CUSTOMERS_CREATE = "customers/create"
CUSTOMERS_UPDATE = "customers/update"
CHECKOUTS_CREATE = "checkouts/create"
CHECKOUTS_UPDATE = "checkouts/update"
APP_UNINSTALLED = "app/uninstalled"
# Mandatory compliance topics of public apps (set in the app's configuration, not subscribed by API):
# https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"

# Our own topic, never sent by Shopify: an order as the Admin GraphQL API reads it (our
# reconciliation and backfill poll `orders`), stored in the inbox like a delivery. It is not in
# SUPPORTED_TOPICS, so the webhook receiver never accepts it; only the parser knows it.
POLLED_ORDER = "stammkunde/order"

# OAuth (authorization code grant for a standalone app), with expiring offline tokens:
# https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
# https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens
OAUTH_AUTHORIZE_URL = "https://{shop}/admin/oauth/authorize"
OAUTH_ACCESS_TOKEN_URL = "https://{shop}/admin/oauth/access_token"

# The least the app's features need (https://shopify.dev/docs/api/usage/access-scopes):
# read_orders   - orders, refunds and transactions: reconciliation and the order webhooks' topics
# read_customers - customers and their marketing consent (customers/* topics)
# write_discounts - reward, referral, tier and reminder codes (discountCode*Create/Deactivate)
# write_orders  - the gift-with-purchase tag on an order (tagsAdd on Order)
# write_customers - the loyalty metafields on customers (metafieldsSet on Customer) and the
#                   member's tier tag (tagsAdd/tagsRemove on Customer)
# write_store_credit_account_transactions - "store credit" rewards (storeCreditAccountCredit)
# read_all_orders (orders older than 60 days) is asked for only for a backfill beyond 60 days.
SCOPES = ("read_orders", "read_customers", "write_discounts", "write_orders", "write_customers",
          "write_store_credit_account_transactions")
METAFIELDS_SCOPE = "write_customers"
BACKFILL_SCOPE = "read_all_orders"

# GraphQL WebhookSubscriptionTopic of each topic we subscribe to by API. The compliance topics
# (customers/data_request, customers/redact, shop/redact) are set in the app's configuration.
SUBSCRIPTION_TOPICS = {
    ORDERS_CREATE: "ORDERS_CREATE",
    ORDERS_PAID: "ORDERS_PAID",
    ORDERS_UPDATED: "ORDERS_UPDATED",
    ORDERS_CANCELLED: "ORDERS_CANCELLED",
    REFUNDS_CREATE: "REFUNDS_CREATE",
    ORDER_TRANSACTIONS_CREATE: "ORDER_TRANSACTIONS_CREATE",
    CUSTOMERS_CREATE: "CUSTOMERS_CREATE",
    CUSTOMERS_UPDATE: "CUSTOMERS_UPDATE",
    CHECKOUTS_CREATE: "CHECKOUTS_CREATE",
    CHECKOUTS_UPDATE: "CHECKOUTS_UPDATE",
    APP_UNINSTALLED: "APP_UNINSTALLED",
}

HMAC_HEADERS = ("X-Shopify-Hmac-Sha256", "shopify-hmac-sha256")
TOPIC_HEADERS = ("X-Shopify-Topic", "shopify-topic")
SHOP_DOMAIN_HEADERS = ("X-Shopify-Shop-Domain", "shopify-shop-domain")
API_VERSION_HEADERS = ("X-Shopify-API-Version", "shopify-api-version")
WEBHOOK_ID_HEADERS = ("X-Shopify-Webhook-Id", "shopify-webhook-id")
EVENT_ID_HEADERS = ("X-Shopify-Event-Id", "shopify-event-id")
TRIGGERED_AT_HEADERS = ("X-Shopify-Triggered-At", "shopify-triggered-at")

# Dedupe keys are stored in a VARCHAR(255) column.
DELIVERY_KEY_MAX_LENGTH = 255
