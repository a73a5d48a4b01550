"""A local stand-in for Shopify's Admin GraphQL endpoint that enforces the cost-based throttle.

    .venv/bin/python -m bench.throttle_server [--port 0] [--restore-rate 100] [--bucket 1000]
        [--token TOKEN] [--tls-dir DIR] [--hostname bench-shop.myshopify.com] [--latency-ms 0]
        [--orders 0]

It answers `POST /admin/api/2026-07/graphql.json` the way Shopify documents it
(https://shopify.dev/docs/api/usage/rate-limits#graphql-admin-api-rate-limits):

- one leaky bucket per shop (the Host header): `maximumAvailable` points, refilled at
  `restoreRate` points/s; a request needs its *requested* cost available, that cost is taken
  before it runs and the difference to the *actual* cost is given back afterwards;
- every answer carries `extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus
  {maximumAvailable, currentlyAvailable, restoreRate}}` (currentlyAvailable as a whole number, as
  Shopify sends it);
- a request whose cost is not available is answered HTTP 200 with
  `{"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}], "extensions": {...}}`
  and counted as a refusal.

Operations (chosen by the root field in the document, as the client sends them):
  discountCodeBasicCreate, discountCodeFreeShippingCreate  cost 10; remembers the code, a taken
      code answers the userError `TAKEN` "Code must be unique. Please try a different code."
  codeDiscountNodeByCode   cost 1; finds a remembered code (case-insensitive) or answers null
  tagsAdd                  cost 10
  orders                   the shop's `--orders` synthetic orders (bench/backfill.py), paged by
      `first`/`after`, oldest first (the search `query` is not applied); requested and actual cost
      computed from the document and the answer as Shopify documents it (`query_cost`)
  ordersCount              cost 1; the number of synthetic orders
A wrong `X-Shopify-Access-Token` answers 401, an unknown document 200 with a GraphQL error.
`--latency-ms` delays accepted answers (loopback answers in about a millisecond; Shopify does not).

`GET /stats` answers the counters (accepted creates, refusals, duplicates, lookups, ...) and, with
`?timeline=1`, one `[t, operation, outcome, currentlyAvailable]` row per GraphQL request (t in
seconds of CLOCK_MONOTONIC, which every process on the machine shares).

With `--tls-dir` it serves HTTPS with a certificate for `--hostname` and 127.0.0.1, signed by a
throwaway CA it generates there (`ca.pem` is what a client trusts). It prints one JSON line
`{"port": ..., "ca": ...}` on stdout once it listens. Loopback only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

GRAPHQL_PATH = "/admin/api/2026-07/graphql.json"
DEFAULT_HOSTNAME = "bench-shop.myshopify.com"

# Requested cost per root field. Shopify charges 10 for a mutation and about 1 for a query that
# returns one object (https://shopify.dev/docs/api/usage/rate-limits#cost-calculation).
COSTS = {
    "discountCodeBasicCreate": 10,
    "discountCodeFreeShippingCreate": 10,
    "codeDiscountNodeByCode": 1,
    "tagsAdd": 10,
    "ordersCount": 1,
    "orders": 0,  # computed per request (`query_cost`)
}
CREATES = {
    "discountCodeBasicCreate": "basicCodeDiscount",
    "discountCodeFreeShippingCreate": "freeShippingCodeDiscount",
}
_ROOT = re.compile(r"\{\s*([_A-Za-z][_0-9A-Za-z]*)")


@dataclass
class Bucket:
    """Shopify's per-shop leaky bucket: `available` points at monotonic time `at`."""

    maximum: float
    restore_rate: float
    available: float
    at: float

    def refill(self, now: float) -> None:
        self.available = min(self.maximum, self.available + self.restore_rate * (now - self.at))
        self.at = now


@dataclass
class Throttle:
    """All shops' buckets, remembered codes and counters; every method holds the lock."""

    maximum: float
    restore_rate: float
    buckets: dict[str, Bucket] = field(default_factory=dict)
    codes: dict[tuple[str, str], str] = field(default_factory=dict)  # (shop, CODE) -> node id
    counters: dict[str, int] = field(default_factory=dict)
    timeline: list[list[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: int = 0  # synthetic orders served by `orders`
    orders_served: int = 0
    actual_cost: float = 0.0  # sum of the actual cost of accepted requests

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def take(self, shop: str, cost: float, now: float) -> tuple[bool, Bucket]:
        """Refill `shop`'s bucket to `now` and take `cost` if it is there; return (taken, bucket)."""
        bucket = self.buckets.get(shop)
        if bucket is None:
            bucket = self.buckets[shop] = Bucket(self.maximum, self.restore_rate, self.maximum, now)
        bucket.refill(now)
        if bucket.available < cost:
            return False, bucket
        bucket.available -= cost
        return True, bucket


def cost_extension(requested: float, actual: float | None, bucket: Bucket) -> dict[str, Any]:
    """`extensions.cost` as Shopify sends it."""
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": float(bucket.maximum),
            "currentlyAvailable": int(bucket.available),
            "restoreRate": float(bucket.restore_rate),
        },
    }


def answer(throttle: Throttle, shop: str, document: str, variables: dict[str, Any],
           latency: float = 0.0) -> dict[str, Any]:
    """Run one GraphQL request against the throttle and the remembered codes; return the body.

    The cost is taken when the request arrives; with `latency` the answer comes that many seconds
    later (the time Shopify takes to run the mutation), its throttleStatus read at answer time.
    Refusals are answered at once.
    """
    match = _ROOT.search(document)
    root = match.group(1) if match else ""
    if root not in COSTS:
        with throttle.lock:
            throttle.count("unknown_document")
        return {"errors": [{"message": f"Field '{root}' doesn't exist on type 'Mutation'",
                            "extensions": {"code": "undefinedField"}}]}
    cost = COSTS[root]
    page: dict[str, Any] | None = None
    if root == "orders":
        page = orders_page(throttle.orders, variables)
        cost = query_cost(document, variables)
    with throttle.lock:
        now = time.monotonic()
        taken, bucket = throttle.take(shop, cost, now)
        if not taken:
            throttle.count("throttled")
            throttle.timeline.append([now, root, "throttled", int(bucket.available)])
            return {
                "errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": cost_extension(cost, None, bucket)},
            }
        if root in CREATES:
            spec = variables.get(CREATES[root]) or {}
            code = str(spec.get("code", ""))
            key = (shop, code.upper())
            if key in throttle.codes:
                outcome = "taken"
                data = {root: {"codeDiscountNode": None, "userErrors": [{
                    "field": [CREATES[root], "code"],
                    "message": "Code must be unique. Please try a different code.",
                    "code": "TAKEN",
                }]}}
            else:
                outcome = "created"
                node_id = f"gid://shopify/DiscountCodeNode/{1000000 + len(throttle.codes) + 1}"
                throttle.codes[key] = node_id
                data = {root: {"codeDiscountNode": {"id": node_id}, "userErrors": []}}
        elif root == "orders":
            assert page is not None
            outcome = "page"
            data = {root: page}
            throttle.orders_served += len(page["nodes"])
        elif root == "ordersCount":
            outcome = "counted"
            data = {root: {"count": throttle.orders, "precision": "EXACT"}}
        elif root == "codeDiscountNodeByCode":
            node_id = throttle.codes.get((shop, str(variables.get("code", "")).upper()))
            outcome = "found" if node_id else "not_found"
            data = {root: {"id": node_id} if node_id else None}
        else:  # tagsAdd
            outcome = "tagged"
            data = {root: {"node": {"id": variables.get("id")}, "userErrors": []}}
        # The cost is taken when the request arrives and the unused part given back with the answer
        # (only `orders` has one: what it could have returned minus what it did).
        actual = query_cost(document, variables, data) if root == "orders" else cost
        bucket.available = min(bucket.maximum, bucket.available + cost - actual)
        throttle.actual_cost += actual
        throttle.count(f"{root}:{outcome}")
        throttle.timeline.append([now, root, outcome, int(bucket.available)])
        if latency <= 0:
            return {"data": data, "extensions": {"cost": cost_extension(cost, actual, bucket)}}
    time.sleep(latency)
    with throttle.lock:
        bucket.refill(time.monotonic())
        return {"data": data, "extensions": {"cost": cost_extension(cost, actual, bucket)}}


# ---- orders (bench/backfill.py) ------------------------------------------------------------

_ORDER_TEMPLATE: dict[str, Any] | None = None


def synthetic_order(index: int) -> dict[str, Any]:
    """Order number `index` of the shop: the Admin API order node of tests/fixtures/shopify_admin_api
    (Bob's paid order, three lines) with its own id, number, dates and one of 500 customers."""
    global _ORDER_TEMPLATE
    if _ORDER_TEMPLATE is None:
        path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "shopify_admin_api" / "orders__paid.json"
        _ORDER_TEMPLATE = json.loads(path.read_text(encoding="utf-8"))["data"]["orders"]["nodes"][0]
    node = json.loads(json.dumps(_ORDER_TEMPLATE))
    number = 100000 + index
    stamp = (dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=600 * index)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    customer = index % 500
    node.update(id=f"gid://shopify/Order/{number}", legacyResourceId=str(number), name=f"#{number}",
                createdAt=stamp, processedAt=stamp, updatedAt=stamp, email=f"kunde{customer}@example.test")
    node["customer"]["id"] = f"gid://shopify/Customer/{7000000 + customer}"
    node["customer"]["defaultEmailAddress"]["emailAddress"] = f"kunde{customer}@example.test"
    return node


def orders_page(total: int, variables: dict[str, Any]) -> dict[str, Any]:
    """One page of the `orders` connection over `total` synthetic orders (cursor = the offset)."""
    first = int(variables.get("first") or 0)
    after = variables.get("after")
    start = int(after) if isinstance(after, str) and after.isdigit() else 0
    end = min(total, start + max(0, min(first, 250)))
    return {"nodes": [synthetic_order(i) for i in range(start, end)],
            "pageInfo": {"hasNextPage": end < total, "endCursor": str(end) if end > start else None}}


def query_cost(document: str, variables: dict[str, Any], data: dict[str, Any] | None = None) -> int:
    """Shopify's calculated query cost of `document`: requested (from `first` arguments) or, with
    `data`, actual (from what came back). https://shopify.dev/docs/api/usage/rate-limits#cost-calculation

    A scalar or enum costs 0, an object 1, a connection (a field with `first`) 2 plus `first` (or
    the items returned) times its item; `nodes` and `edges` are the items. Fragments are inlined.
    """
    from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode, parse

    tree = parse(document)
    fragments = {d.name.value: d for d in tree.definitions if d.kind == "fragment_definition"}
    operation = next(d for d in tree.definitions if isinstance(d, OperationDefinitionNode))

    def fields_of(selection_set: Any) -> list[FieldNode]:
        out: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, FragmentSpreadNode):
                out.extend(fields_of(fragments[selection.name.value].selection_set))
            elif isinstance(selection, InlineFragmentNode):
                out.extend(fields_of(selection.selection_set))
        return out

    def first_of(field_node: FieldNode) -> int | None:
        for argument in field_node.arguments or ():
            if argument.name.value == "first":
                value = argument.value
                if value.kind == "variable":
                    return int(variables.get(value.name.value) or 0)
                return int(value.value)
        return None

    def cost(selection_set: Any, value: Any, actual: bool) -> int:
        total = 0
        for field_node in fields_of(selection_set):
            if field_node.selection_set is None:
                continue
            name = field_node.name.value
            child = value.get(name) if isinstance(value, dict) else None
            first = first_of(field_node)
            if first is not None:  # a connection or a paged list
                items_field = next((f for f in fields_of(field_node.selection_set)
                                    if f.name.value in ("nodes", "edges")), None)
                item_selection = items_field.selection_set if items_field else field_node.selection_set
                items = (child.get(items_field.name.value) if items_field and isinstance(child, dict)
                         else child) if actual else None
                if actual:
                    items = items if isinstance(items, list) else []
                    total += 2 + sum(1 + cost(item_selection, item, actual) for item in items)
                else:
                    total += 2 + first * (1 + cost(item_selection, None, actual))
                for other in fields_of(field_node.selection_set):
                    if other is not items_field and other.selection_set is not None:
                        total += 1 + cost(other.selection_set, child.get(other.name.value)
                                          if isinstance(child, dict) else None, actual)
            elif actual and isinstance(child, list):
                total += sum(1 + cost(field_node.selection_set, item, actual) for item in child)
            elif actual and child is None:
                continue
            else:
                total += 1 + cost(field_node.selection_set, child, actual)
        return total

    return cost(operation.selection_set, data, data is not None)


def stats(throttle: Throttle, with_timeline: bool) -> dict[str, Any]:
    """The counters (and the timeline) as JSON-able data."""
    with throttle.lock:
        counters = dict(throttle.counters)
        created = sum(v for k, v in counters.items() if k.endswith(":created"))
        out: dict[str, Any] = {
            "maximumAvailable": throttle.maximum,
            "restoreRate": throttle.restore_rate,
            "accepted_creates": created,
            "refusals": counters.get("throttled", 0),
            "taken": sum(v for k, v in counters.items() if k.endswith(":taken")),
            "requests": len(throttle.timeline),
            "unauthorized": counters.get("unauthorized", 0),
            "counters": counters,
            "codes": len(throttle.codes),
            "orders_served": throttle.orders_served,
            "actual_cost": throttle.actual_cost,
        }
        if with_timeline:
            out["timeline"] = list(throttle.timeline)
            out["code_list"] = sorted(code for _, code in throttle.codes)
            out["code_ids"] = {code: node for (_, code), node in throttle.codes.items()}
    return out


def make_handler(throttle: Throttle, token: str | None, latency: float = 0.0) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "bench-shopify"
        # Headers and body go out in two writes; without TCP_NODELAY the second waits for the
        # client's delayed ACK (~40 ms per request), a delay Shopify's servers do not add.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            if url.path != "/stats":
                self._send(404, {"errors": "Not Found"})
                return
            self._send(200, stats(throttle, parse_qs(url.query).get("timeline") == ["1"]))

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if urlsplit(self.path).path != GRAPHQL_PATH:
                self._send(404, {"errors": "Not Found"})
                return
            if token is not None and self.headers.get("X-Shopify-Access-Token") != token:
                with throttle.lock:
                    throttle.count("unauthorized")
                self._send(401, {"errors": "[API] Invalid API key or access token "
                                           "(unrecognized login or wrong password)"})
                return
            try:
                request = json.loads(raw)
                document = str(request["query"])
                variables = request.get("variables") or {}
            except (ValueError, KeyError, TypeError):
                self._send(400, {"errors": [{"message": "Invalid JSON in request body"}]})
                return
            shop = (self.headers.get("Host") or "").split(":", 1)[0].lower()
            self._send(200, answer(throttle, shop, document, variables, latency))

    return Handler


# ---- TLS ----------------------------------------------------------------------------------


def make_certificates(directory: Path, hostname: str) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server certificate for `hostname` and 127.0.0.1; return
    (ca.pem, server.pem, server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stammkunde bench CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class _TLSServer(ThreadingHTTPServer):
    """Handshakes in the connection's own thread, so one slow client never blocks accept()."""

    daemon_threads = True
    request_queue_size = 128
    context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def make_server(port: int, *, restore_rate: float, bucket: float, token: str | None,
                tls_dir: Path | None, hostname: str = DEFAULT_HOSTNAME,
                latency: float = 0.0, orders: int = 0) -> tuple[_TLSServer, Throttle, Path | None]:
    """Build (not start) the server on 127.0.0.1:`port`; returns (server, throttle, CA path or None)."""
    throttle = Throttle(maximum=float(bucket), restore_rate=float(restore_rate), orders=orders)
    server = _TLSServer(("127.0.0.1", port), make_handler(throttle, token, latency))
    ca_path = None
    if tls_dir is not None:
        ca_path, cert, key = make_certificates(tls_dir, hostname)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        server.context = context
    return server, throttle, ca_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throttle_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--restore-rate", type=float, default=100.0, help="points/s (default 100)")
    parser.add_argument("--bucket", type=float, default=1000.0, help="maximumAvailable (default 1000)")
    parser.add_argument("--token", default=None, help="the X-Shopify-Access-Token to accept (default: any)")
    parser.add_argument("--tls-dir", type=Path, default=None, help="serve HTTPS with a CA and cert made here")
    parser.add_argument("--hostname", default=DEFAULT_HOSTNAME, help="the shop domain on the certificate")
    parser.add_argument("--orders", type=int, default=0, help="synthetic orders `orders` serves (default 0)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="answer accepted requests this much later (Shopify's execution time; default 0)")
    args = parser.parse_args(argv)
    server, _, ca_path = make_server(args.port, restore_rate=args.restore_rate, bucket=args.bucket,
                                     token=args.token, tls_dir=args.tls_dir, hostname=args.hostname,
                                     latency=args.latency_ms / 1000, orders=args.orders)
    print(json.dumps({"port": server.server_address[1], "ca": str(ca_path) if ca_path else None}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop_on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
