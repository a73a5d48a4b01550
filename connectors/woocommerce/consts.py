"""WooCommerce words, verbatim: webhook topics, delivery headers, order statuses, the API version.

REST coupons: https://woocommerce.github.io/woocommerce-rest-api-docs/#coupons

Topics and headers: woocommerce/woocommerce `plugins/woocommerce/includes/class-wc-webhook.php`
(`get_default_topic_hooks`, `deliver`).
Statuses: https://woocommerce.github.io/woocommerce-rest-api-docs/#orders
"""

from __future__ import annotations

PLATFORM = "woocommerce"

# The REST namespace we pin; webhook bodies come from the same controllers (`get_wp_api_payload`).
API_VERSION = "wc/v3"

# ---- webhook topics (`<resource>.<event>`) -----------------------------------------------
ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"  # also fires on refunds: WooCommerce has no refund topic
ORDER_DELETED = "order.deleted"  # body is only {"id": N}
ORDER_RESTORED = "order.restored"
CUSTOMER_CREATED = "customer.created"
CUSTOMER_UPDATED = "customer.updated"
# Our own topic, never sent by a store: an order's refunds with their lines as `GET
# orders/N/refunds` answers (jobs.reconcile.fetch_refund_detail), stored in the inbox like a
# delivery. Not in SUPPORTED_TOPICS: the receiver never accepts it; only the parser knows it.
REFUND_DETAILS = "stammkunde/order_refunds"

# ---- delivery headers -------------------------------------------------------------------
HEADER_SOURCE = "X-WC-Webhook-Source"  # home_url('/'), with a trailing slash
HEADER_TOPIC = "X-WC-Webhook-Topic"
HEADER_RESOURCE = "X-WC-Webhook-Resource"
HEADER_EVENT = "X-WC-Webhook-Event"
HEADER_SIGNATURE = "X-WC-Webhook-Signature"  # base64(HMAC-SHA256(raw body, secret))
HEADER_WEBHOOK_ID = "X-WC-Webhook-ID"
# wp_hash(webhook id . current second): two different deliveries can share it, so it is not a
# unique event id and we never use it as a dedupe key.
HEADER_DELIVERY_ID = "X-WC-Webhook-Delivery-ID"

# ---- order statuses as the REST API spells them (no "wc-" prefix) -------------------------
STATUS_PENDING = "pending"
STATUS_PROCESSING = "processing"
STATUS_ON_HOLD = "on-hold"
STATUS_COMPLETED = "completed"
STATUS_CANCELLED = "cancelled"
STATUS_REFUNDED = "refunded"
STATUS_FAILED = "failed"
# Block checkout's unfinished order; still delivered through order.updated (woocommerce#66995).
STATUS_CHECKOUT_DRAFT = "checkout-draft"

# Statuses in which money has been received (refunded: received, then given back).
PAID_STATUSES = (STATUS_PROCESSING, STATUS_COMPLETED, STATUS_REFUNDED)

# ---- REST API calls (client.py) -----------------------------------------------------------
# (connect, read) seconds for every call: shared WordPress hosts can take seconds to write.
REQUEST_TIMEOUT = (5.0, 30.0)
# Seconds to wait after a 429 that carries no usable Retry-After header.
DEFAULT_RETRY_AFTER = 5.0
# The error `code` of POST coupons when the code is taken (live capture 11-create-coupon-duplicate).
ERROR_COUPON_CODE_EXISTS = "woocommerce_rest_coupon_code_already_exists"
# The error `code` of GET/PUT coupons/<id> for a coupon that does not exist (live capture 046).
ERROR_COUPON_INVALID_ID = "woocommerce_rest_shop_coupon_invalid_id"
# The error `code` of GET/PUT customers/<id> for a customer that does not exist.
ERROR_CUSTOMER_INVALID_ID = "woocommerce_rest_invalid_id"
# The customer meta that shows a member's tier to the store's own plugins and segments (the
# tier's name; "" when the member has none). Customer meta comes back as sent, among WordPress'
# own user meta (live captures 100-101).
TIER_META_KEY = "stammkunde_tier"
# Coupon `discount_type` values we send ("fixed_product" is the third one WooCommerce knows).
DISCOUNT_TYPE_PERCENT = "percent"
DISCOUNT_TYPE_FIXED_CART = "fixed_cart"
# A combination offer's condition, as coupon meta the Stammkunde plugin checks in
# `woocommerce_coupon_is_valid` (WooCommerce core has no "requires X in the cart"): the product or
# variation ids to buy (comma-separated), how many, and their name for the customer's message.
META_BUYS_IDS = "_stammkunde_buys_ids"
META_BUYS_QUANTITY = "_stammkunde_buys_quantity"
META_BUYS_LABEL = "_stammkunde_buys_label"

# ---- our WordPress plugin's signed calls to the app (webhooks.py verify_plugin_request; the plugin's
# class-stammkunde-signer.php signs the same bytes) ----------------------------------------
PLUGIN_HEADER_SHOP = "X-Stammkunde-Shop"  # the shop's id in the app
PLUGIN_HEADER_TIMESTAMP = "X-Stammkunde-Timestamp"  # Unix seconds
PLUGIN_HEADER_NONCE = "X-Stammkunde-Nonce"  # accepted once per shop
PLUGIN_HEADER_SIGNATURE = "X-Stammkunde-Signature"  # base64(HMAC-SHA256(secret, canonical request))
PLUGIN_SIGNATURE_VERSION = "stammkunde-v1"
# A request older or newer than this is refused (the store's clock may be off a little).
PLUGIN_REPLAY_WINDOW_SECONDS = 300
# The WooCommerce REST settings group our plugin registers (`woocommerce_settings-stammkunde`),
# and its options; `POST settings/stammkunde/batch` fills them after a wc-auth connect.
PLUGIN_SETTINGS_GROUP = "stammkunde"
PLUGIN_OPTION_APP_URL = "stammkunde_app_url"
PLUGIN_OPTION_SHOP_ID = "stammkunde_shop_id"
PLUGIN_OPTION_SECRET = "stammkunde_secret"
# The error `code` of the settings API for a group nobody registered (the plugin is not active).
ERROR_SETTING_GROUP_INVALID = "rest_setting_setting_group_invalid"
