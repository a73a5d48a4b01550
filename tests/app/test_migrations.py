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


def test_postgresql_inbox_shop_key_goes_unenforced_and_back(postgresql_url):
    # given a new PostgreSQL 18 database migrated to head
    import uuid

    import psycopg
    from alembic import command
    from alembic.config import Config

    from app.migrate import PYPROJECT, upgrade

    host = postgresql_url.split("host=", 1)[1]
    admin = f"postgresql://postgres@/postgres?host={host}"
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@/{name}?host={host}"
    libpq = f"postgresql://postgres@/{name}?host={host}"
    cfg = Config(toml_file=str(PYPROJECT))
    cfg.attributes["database_url"] = url
    upgrade(url)

    def enforced() -> bool:
        with psycopg.connect(libpq) as conn:
            return conn.execute("SELECT conenforced FROM pg_constraint "
                                "WHERE conname = 'fk_webhook_deliveries_shop_id_shops'").fetchone()[0]

    def deliveries_of(shop_id: int) -> int:
        with psycopg.connect(libpq) as conn:
            return conn.execute("SELECT count(*) FROM webhook_deliveries WHERE shop_id = %s", (shop_id,)).fetchone()[0]

    insert = ("INSERT INTO webhook_deliveries (shop_id, platform, topic, dedupe_key, headers, body, status, attempts, "
              "received_at) VALUES (%s, 'shopify', 'orders/paid', %s, '{}', 'x', 'received', 0, now())")
    try:
        # then the shop key is not checked, and deleting a shop still deletes its deliveries
        assert enforced() is False
        from app.models import Platform, Shop

        engine = make_engine(url)
        with engine.begin() as conn:
            shop = conn.execute(Shop.__table__.insert().values(platform=Platform.SHOPIFY, domain="m.myshopify.com")
                                .returning(Shop.id)).scalar_one()
        engine.dispose()
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(insert, (shop, "kept-until-the-shop-goes"))
            conn.execute(insert, (shop + 1000, "of-a-shop-erased-meanwhile"))
            conn.execute("DELETE FROM shops WHERE id = %s", (shop,))
        assert deliveries_of(shop) == 0

        # when it is downgraded, the key is checked again, once the deliveries without a shop are gone
        command.downgrade(cfg, "0008")
        assert enforced() is True
        assert deliveries_of(shop + 1000) == 0
        with psycopg.connect(libpq, autocommit=True) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(insert, (shop + 1000, "refused"))

        # and upgraded again, it is not
        upgrade(url)
        assert enforced() is False
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
