"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db import make_engine
from app.models import Base


def test_models_and_migrations_agree(database_url):
    # given a database migrated to head (the session fixture ran `upgrade head`)
    engine = make_engine(database_url)

    # when the models are compared with it
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()

    # then there is nothing a new migration would have to do
    assert diff == []


def test_migrations_downgrade_and_upgrade_again(tmp_path):
    # given an empty SQLite database
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.migrate import PYPROJECT, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = Config(toml_file=str(PYPROJECT))
    cfg.attributes["database_url"] = url

    # when it is upgraded, downgraded to nothing and upgraded again
    upgrade(url)
    command.downgrade(cfg, "base")
    upgrade(url)

    # then it ends at head with every table
    engine = make_engine(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == ScriptDirectory.from_config(cfg).get_current_head()
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


@pytest.fixture
def fresh_postgresql(postgresql_url):
    """A new PostgreSQL database migrated to head: (SQLAlchemy URL, libpq URI, Alembic config);
    dropped afterwards."""
    import uuid

    import psycopg
    from alembic.config import Config

    from app.migrate import PYPROJECT, upgrade

    host = postgresql_url.split("host=", 1)[1]
    admin = f"postgresql://postgres@/postgres?host={host}"
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@/{name}?host={host}"
    cfg = Config(toml_file=str(PYPROJECT))
    cfg.attributes["database_url"] = url
    try:
        upgrade(url)
        yield url, f"postgresql://postgres@/{name}?host={host}", cfg
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _add_shop(url: str) -> int:
    # Plain SQL with the columns every revision under test has (the model's defaults would name
    # columns that later migrations add).
    from sqlalchemy import text

    engine = make_engine(url)
    with engine.begin() as conn:
        shop = conn.execute(text(
            "INSERT INTO shops (platform, domain, name, currency, timezone, language, status, program_version, "
            "created_at, updated_at) VALUES ('shopify', 'm.myshopify.com', '', 'EUR', 'Europe/Berlin', 'de', "
            "'active', 1, now(), now()) RETURNING id")).scalar_one()
    engine.dispose()
    return shop


def test_postgresql_inbox_shop_key_is_enforced_at_head_and_0009s_state_comes_back_on_downgrade(fresh_postgresql):
    # given a new PostgreSQL 18 database migrated to head
    import psycopg
    from alembic import command

    from app.migrate import upgrade

    url, libpq, cfg = fresh_postgresql

    def enforced() -> bool:
        with psycopg.connect(libpq) as conn:
            return conn.execute("SELECT conenforced FROM pg_constraint "
                                "WHERE conname = 'fk_webhook_deliveries_shop_id_shops'").fetchone()[0]

    def triggers() -> list[str]:
        with psycopg.connect(libpq) as conn:
            return [name for (name,) in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'shops'::regclass AND NOT tgisinternal")]

    def deliveries_of(shop_id: int) -> int:
        with psycopg.connect(libpq) as conn:
            return conn.execute("SELECT count(*) FROM webhook_deliveries WHERE shop_id = %s", (shop_id,)).fetchone()[0]

    insert = ("INSERT INTO webhook_deliveries (shop_id, platform, topic, dedupe_key, headers, body, status, attempts, "
              "received_at) VALUES (%s, 'shopify', 'orders/paid', %s, '{}', 'x', 'received', 0, now())")
    # then the shop key is checked, as on SQLite, with no trigger on shops: deleting a shop deletes
    # its deliveries by the cascade, and a delivery of a missing shop is refused
    assert enforced() is True and triggers() == []
    shop = _add_shop(url)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(insert, (shop, "kept-until-the-shop-goes"))
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(insert, (shop + 1000, "refused"))
        conn.execute("DELETE FROM shops WHERE id = %s", (shop,))
    assert deliveries_of(shop) == 0

    # when it is downgraded below 0013, the key is not checked and the trigger does the cascade (0009)
    command.downgrade(cfg, "0012")
    assert enforced() is False and triggers() == ["shops_delete_deliveries"]
    shop = _add_shop(url)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(insert, (shop, "deleted-by-the-trigger"))
        conn.execute(insert, (shop + 1000, "of-a-shop-erased-meanwhile"))
        conn.execute("DELETE FROM shops WHERE id = %s", (shop,))
    assert deliveries_of(shop) == 0 and deliveries_of(shop + 1000) == 1

    # and upgraded again, the key is checked once the deliveries without a shop are gone
    upgrade(url)
    assert enforced() is True and triggers() == []
    assert deliveries_of(shop + 1000) == 0


def test_postgresql_inbox_keeps_a_compressed_body_in_its_row(fresh_postgresql):
    # given a new PostgreSQL database migrated to head, and a 6 KB orders/paid body with the
    # headers Shopify sends (real data from the fixture; compressed, it is over 2 KB)
    import json
    from pathlib import Path

    import psycopg
    from alembic import command

    from app.migrate import upgrade

    url, libpq, cfg = fresh_postgresql
    shop = _add_shop(url)
    order = json.loads((Path(__file__).parent.parent / "fixtures" / "shopify" / "orders_paid.json").read_text())
    body = json.dumps({k: v for k, v in order.items() if k not in ("line_items", "fulfillments")},
                      separators=(",", ":")).encode()
    assert 5000 < len(body) < 8000, len(body)
    headers = json.dumps({f"X-Shopify-{k}": f"{k.lower()}-value-{'v' * 20}" for k in (
        "Topic", "Hmac-Sha256", "Shop-Domain", "Api-Version", "Webhook-Id", "Triggered-At", "Event-Id",
        "Name", "Test", "Product-Id", "Order-Id", "Client-Id")})

    def store(key: str) -> None:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("INSERT INTO webhook_deliveries (shop_id, platform, topic, dedupe_key, headers, body, "
                         "status, attempts, received_at) VALUES (%s, 'shopify', 'orders/paid', %s, %s::json, %s, "
                         "'received', 0, now())", (shop, key, headers, body))

    def stored(key: str) -> bytes:
        with psycopg.connect(libpq) as conn:
            return conn.execute("SELECT body FROM webhook_deliveries WHERE dedupe_key = %s", (key,)).fetchone()[0]

    def toast_bytes() -> int:
        with psycopg.connect(libpq) as conn:
            return conn.execute("SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                                "WHERE relname = 'webhook_deliveries'").fetchone()[0]

    # when a delivery is stored
    store("inline")

    # then its body is whole, and nothing went to the TOAST relation
    assert stored("inline") == body
    assert toast_bytes() == 0

    # when the migration is undone, the same delivery's body goes to the TOAST relation again
    command.downgrade(cfg, "0009")
    store("moved-out")
    assert stored("moved-out") == body
    assert toast_bytes() > 0

    # and upgraded again, the setting is back
    upgrade(url)
    with psycopg.connect(libpq) as conn:
        options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'webhook_deliveries'").fetchone()[0]
    assert options == ["toast_tuple_target=4080"]


def test_staff_accounts_from_before_roles_keep_seeing_every_shop(tmp_path):
    # given a database at 0019 with a staff account (which then saw every shop)
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from app.migrate import PYPROJECT

    url = f"sqlite:///{tmp_path / 'staff.db'}"
    cfg = Config(toml_file=str(PYPROJECT))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "0019")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO staff_users (email, password_hash, active, created_at) "
                             "VALUES ('old@stammkunde.example', 'x', 1, '2026-01-01 00:00:00')"))

    # when it is upgraded to 0020
    command.upgrade(cfg, "0020")

    # then the account is an administrator (every shop, as before), without a second factor
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT is_admin, totp_secret_enc, language FROM staff_users")).one()
    engine.dispose()
    assert (bool(row[0]), row[1], row[2]) == (True, None, None)
