"""Name resolution for the code benchmark: send one shop's HTTPS traffic to the local throttle server.

`install({"bench-shop.myshopify.com:443": ("127.0.0.1", 54321)})` wraps `socket.getaddrinfo` so
that exactly that (host, port) resolves to the loopback address and port given; every other name
resolves as before. Nothing else changes: `requests` still builds `https://bench-shop.myshopify.com/
admin/api/2026-07/graphql.json`, sends `Host: bench-shop.myshopify.com`, does the TLS handshake with
that name as SNI and verifies the server's certificate against it (the CA is trusted through
REQUESTS_CA_BUNDLE). It is what an /etc/hosts line plus a port forward would do, inside the process.

The worker gets it through a `sitecustomize.py` that bench/codes.py writes into a temp directory on
PYTHONPATH; it reads BENCH_RESOLVE ("host:port=ip:port[,...]").
"""

from __future__ import annotations

import os
import socket
from typing import Any

_original = socket.getaddrinfo
_routes: dict[tuple[str, int], tuple[str, int]] = {}


def parse(spec: str) -> dict[str, tuple[str, int]]:
    """Parse "host:port=ip:port,..." into {"host:port": (ip, port)}."""
    routes = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        source, target = part.split("=", 1)
        ip, port = target.rsplit(":", 1)
        routes[source.lower()] = (ip, int(port))
    return routes


def install(routes: dict[str, tuple[str, int]]) -> None:
    """Resolve each "host:port" in `routes` to its (ip, port); leave every other lookup alone."""
    for source, target in routes.items():
        host, port = source.rsplit(":", 1)
        _routes[(host.lower(), int(port))] = target

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,  # noqa: A002
                    flags: int = 0) -> list[Any]:
        if isinstance(host, bytes):
            host = host.decode()
        try:
            key = (str(host).lower(), int(port))
        except (TypeError, ValueError):
            key = None
        if key in _routes:
            ip, target_port = _routes[key]
            return _original(ip, target_port, family, type, proto, flags)
        return _original(host, port, family, type, proto, flags)

    socket.getaddrinfo = getaddrinfo


def install_from_env() -> None:
    """Called by the benchmark's sitecustomize: install the BENCH_RESOLVE routes."""
    spec = os.environ.get("BENCH_RESOLVE")
    if spec:
        install(parse(spec))
