"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

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
