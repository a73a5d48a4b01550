"""Running the Alembic migrations from code (release phase, `make run`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database at `database_url` to `revision`."""
    cfg = Config(toml_file=str(PYPROJECT))
    cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, revision)
