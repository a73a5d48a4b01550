"""All configuration, read from the environment in one place (the only reader of os.environ)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
DEFAULT_PORT = 5000
DEFAULT_PUBLIC_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message says which and what to do."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _days(environ: Mapping[str, str], name: str, default: int) -> int:
    value = _int(environ, name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more days, got {value}")
    return value


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (environ.get(name) or default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _dev_secrets(instance: Path) -> dict[str, str]:
    """Return development secrets kept in instance/dev-secrets.json, creating them once.

    Only used outside production, so `make run` works on a fresh clone and encrypted shop secrets
    survive restarts. Production refuses to start without real values instead.
    """
    path = instance / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    instance.mkdir(parents=True, exist_ok=True)
    values = {"SECRET_KEY": secrets.token_urlsafe(32), "ENCRYPTION_KEY": Fernet.generate_key().decode()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return values


# What a running `make run` tells commands in other terminals (written by app/runner.py, mode 0600,
# removed when it stops): its embedded Redis URL, the web server's URL and PUBLIC_URL.
RUN_FILE = "make-run.json"


def run_file(instance: Path) -> Path:
    """Return where `make run` records its URLs for an instance folder."""
    return instance / RUN_FILE


def instance_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the instance folder (INSTANCE_PATH, default ./instance)."""
    env = os.environ if environ is None else environ
    return Path(env.get("INSTANCE_PATH") or DEFAULT_INSTANCE).resolve()


def public_url_for(port: int, environ: Mapping[str, str] | None = None) -> str:
    """Return PUBLIC_URL when set, else the web server's loopback URL on `port` (what `make run` uses)."""
    env = os.environ if environ is None else environ
    return (env.get("PUBLIC_URL") or f"http://127.0.0.1:{port}").rstrip("/")


def _running(instance: Path) -> dict[str, str]:
    """Return the URLs a running `make run` recorded, or {} when none is recorded.

    A stale file (from a run that was killed) is harmless: its Redis refuses connections at once
    and commands say they cannot reach it.
    """
    try:
        data = json.loads(run_file(instance).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def normalize_database_url(url: str) -> str:
    """Return a SQLAlchemy URL: plain postgres URLs get the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_settings: tuple[int, dict[str, Any]] | None = None


def settings(*, reload: bool = False) -> dict[str, Any]:
    """Return this process's settings, loaded from the environment once (`load`).

    The web app loads them when it is built (`create_app`, which reloads them, so a second app
    in one process, as in the tests, sees its environment); a worker's jobs on first use. A
    forked child loads its own.
    """
    global _settings
    if reload or _settings is None or _settings[0] != os.getpid():
        _settings = (os.getpid(), load())
    return _settings[1]


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the settings as a dict (Flask config keys), from `environ` (default os.environ).

    Raises:
        ConfigError: production mode with a secret missing, or a malformed value.
    """
    env = os.environ if environ is None else environ
    mode = env.get("STAMMKUNDE_ENV", "development").strip().lower()
    if mode not in {"development", "production", "test"}:
        raise ConfigError(f"STAMMKUNDE_ENV must be development, production or test, got {mode!r}")
    instance = instance_path(env)
    running = _running(instance)

    secret_key = env.get("SECRET_KEY") or None
    encryption_key = env.get("ENCRYPTION_KEY") or None
    if mode == "production":
        missing = [n for n, v in (("SECRET_KEY", secret_key), ("ENCRYPTION_KEY", encryption_key)) if not v]
        if missing:
            raise ConfigError(
                f"production mode needs {', '.join(missing)} set in the environment "
                "(ENCRYPTION_KEY: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            )
    elif not (secret_key and encryption_key):
        dev = _dev_secrets(instance)
        secret_key = secret_key or dev["SECRET_KEY"]
        encryption_key = encryption_key or dev["ENCRYPTION_KEY"]

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'stammkunde.db'}"
    return {
        "ENV_MODE": mode,
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": secret_key,
        # Comma-separated Fernet keys, newest first (MultiFernet rotation).
        "ENCRYPTION_KEY": encryption_key,
        "DATABASE_URL": normalize_database_url(database_url),
        # Unset: the embedded Redis of a running `make run` (so commands work in a second terminal).
        "REDIS_URL": env.get("REDIS_URL") or running.get("redis_url") or None,
        "PORT": _int(env, "PORT", DEFAULT_PORT),
        # The embedded Redis of `make run` (REDIS_URL unset): its loopback port, 0 for a free one.
        "REDIS_PORT": _int(env, "REDIS_PORT", 0),
        # Where this app's web server answers locally (`flask demo` posts to it).
        "WEB_URL": (running.get("web_url") or f"http://127.0.0.1:{_int(env, 'PORT', DEFAULT_PORT)}").rstrip("/"),
        "SHOPIFY_API_KEY": env.get("SHOPIFY_API_KEY") or None,
        "SHOPIFY_API_SECRET": env.get("SHOPIFY_API_SECRET") or None,
        "SHOPIFY_API_SECRET_OLD": env.get("SHOPIFY_API_SECRET_OLD") or None,
        "SHOPIFY_API_VERSION": env.get("SHOPIFY_API_VERSION") or "2026-07",
        # Webhook bodies above this are refused with 413 before anything reads them.
        "MAX_CONTENT_LENGTH": _int(env, "WEBHOOK_MAX_BYTES", 1024 * 1024),
        # The batching dispatcher: how long a delivery may wait before its batch is enqueued.
        "DISPATCH_INTERVAL_MS": _int(env, "DISPATCH_INTERVAL_MS", 200),
        "DISPATCH_BATCH_SIZE": _int(env, "DISPATCH_BATCH_SIZE", 200),
        # Deliveries still 'received' after this many seconds are re-enqueued by the sweep.
        "REQUEUE_AFTER_SECONDS": _int(env, "REQUEUE_AFTER_SECONDS", 60),
        # Bodies and headers of deliveries handled this many days ago are emptied (0 keeps them).
        "DELIVERY_RETENTION_DAYS": _days(env, "DELIVERY_RETENTION_DAYS", 30),
        # E-mail: with SMTP_HOST unset every message is written as an .eml file to OUTBOX_PATH.
        "SMTP_HOST": env.get("SMTP_HOST") or None,
        "SMTP_PORT": _int(env, "SMTP_PORT", 587),
        "SMTP_SECURITY": _choice(env, "SMTP_SECURITY", ("starttls", "ssl", "none"), "starttls"),
        "SMTP_USERNAME": env.get("SMTP_USERNAME") or None,
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD") or None,
        "SMTP_TIMEOUT": _int(env, "SMTP_TIMEOUT", 20),
        "MAIL_FROM": env.get("MAIL_FROM") or "Stammkunde <no-reply@localhost>",
        "OUTBOX_PATH": env.get("OUTBOX_PATH") or str(instance / "outbox"),
        # Base URL of this app as customers reach it (links in e-mails: unsubscribe, rewards page).
        # Never from a process's own PORT (honcho gives web, worker and clock different ones):
        # `make run` passes one PUBLIC_URL to every process and records it for other terminals.
        "PUBLIC_URL": (env.get("PUBLIC_URL") or running.get("public_url") or DEFAULT_PUBLIC_URL).rstrip("/"),
        # Reverse proxies of our own in front of `web` that append X-Forwarded-For (0: none, and
        # the header is ignored): the admin throttles sign-ins per client address.
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), mode == "production"),
        "WTF_CSRF_TIME_LIMIT": None,
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        # text: `time LEVEL logger message key=value ...`; json: one object a line (the same fields).
        "LOG_FORMAT": _choice(env, "LOG_FORMAT", ("text", "json"), "text"),
        # Set: prometheus_client keeps each process's metrics in files here (it reads the variable
        # itself at import) and /metrics adds them up; unset: one process's own registry.
        "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        # /readyz wants a worker heartbeat at most this old. An idle rq worker beats every
        # worker_ttl - 15 s (420 by default), so the default is its key's lifetime, 420 + 60.
        "READY_HEARTBEAT_MAX_AGE_SECONDS": _int(env, "READY_HEARTBEAT_MAX_AGE_SECONDS", 480),
    }
