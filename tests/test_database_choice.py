"""How a test chooses its databases (tests/conftest.py, pytest_generate_tests): a test that uses the
database runs on SQLite and PostgreSQL; `sqlite_only` runs it once on SQLite, `postgres_only` once
on PostgreSQL."""

from __future__ import annotations

import pytest


def _databases_collected_for(request: pytest.FixtureRequest, name: str) -> list[str]:
    module = request.node.getparent(pytest.Module)
    return sorted(item.callspec.params["database_url"] for item in module.collect()
                  if isinstance(item, pytest.Function) and item.originalname == name)


def test_unmarked(database_url):
    assert database_url.startswith(("sqlite", "postgresql"))


@pytest.mark.sqlite_only
def test_marked_sqlite_only(database_url):
    assert database_url.startswith("sqlite")


@pytest.mark.postgres_only
def test_marked_postgres_only(database_url):
    assert database_url.startswith("postgresql")


@pytest.mark.parametrize("_case, name, expected", [
    ("no marker: both databases", "test_unmarked", ["postgresql", "sqlite"]),
    ("sqlite_only: SQLite alone", "test_marked_sqlite_only", ["sqlite"]),
    ("postgres_only: PostgreSQL alone", "test_marked_postgres_only", ["postgresql"]),
])
def test_a_marker_chooses_the_databases(request, _case, name, expected):
    # given the tests above, as pytest collects this module (whatever -k or -m selected)

    # then each ran on the databases its marker names
    assert _databases_collected_for(request, name) == expected
