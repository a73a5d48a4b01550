"""Stammkunde: the Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, database, queues, dispatcher, blueprints, CLI."""
    from app import config, db, dispatch, logs, queues
    from app.web import admin, cli, customer_page, health, install, plugin_api, proxy, public, webhooks, widget
    from app.web.sessions import CookieSessionInterface

    settings = config.settings(reload=True)
    app = Flask(__name__, instance_path=settings["INSTANCE_PATH"])
    app.config.update(settings)
    app.config.setdefault("SHOP_CACHE_SECONDS", 5.0)
    if test_config:
        app.config.update(test_config)
    logs.configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    app.session_interface = CookieSessionInterface()

    db.init_app(app)
    queues.init_app(app)
    dispatch.init_app(app)
    admin.init_app(app)
    customer_page.init_app(app)
    public.init_app(app)
    install.init_app(app)
    plugin_api.init_app(app)
    proxy.init_app(app)
    widget.init_app(app)
    health.init_app(app)
    cli.init_app(app)
    webhooks.init_app(app)  # last: a WSGI layer in front of everything above
    return app
