"""Every supported topic has a fixture, and every fixture is used by some test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from connectors import CONNECTORS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TESTS = Path(__file__).resolve().parent.parent


def _slug(platform: str, topic: str) -> str:
    return topic.replace("/", "_").replace(".", "_")


def _names_in(sources: list[Path]) -> set[str]:
    """Every string literal of the modules, whole (the parts of an f-string are separate literals)."""
    return {
        node.value
        for source in sources
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def unused_fixtures(fixtures: Path, tests: Path) -> list[str]:
    """Fixture files (folder/name, READMEs aside) that no test names exactly.

    A file counts as used when a string literal in a module under `tests` (this one aside) is its
    whole name ("orders_paid.json") or its name without the last suffix ("orders_paid",
    "order_created.headers"). A longer name that starts with it ("orders_paid__guest_checkout"), a
    path that ends with it or a comment mentioning it does not count; nor does a glob over the folder.
    """
    sources = [p for p in sorted(tests.rglob("*.py")) if p.resolve() != Path(__file__).resolve()]
    names = _names_in(sources)
    return [
        f"{path.parent.name}/{path.name}"
        for path in sorted(fixtures.glob("*/*"))
        if path.is_file() and path.name != "README.md"
        and path.name not in names and path.name.removesuffix(path.suffix) not in names
    ]


@pytest.mark.parametrize("platform", sorted(CONNECTORS))
def test_every_topic_has_a_fixture(platform):
    # given the fixture files of the platform
    stems = {p.name.split(".")[0].split("__")[0] for p in (FIXTURES / platform).glob("*.json")}

    # then each supported topic has at least one
    missing = [t for t in CONNECTORS[platform].SUPPORTED_TOPICS if _slug(platform, t) not in stems]
    assert missing == []


def test_every_fixture_is_named_by_a_test():
    # given every fixture folder and every test module

    # then each fixture file is named, exactly, by some test
    assert unused_fixtures(FIXTURES, TESTS) == []


UNUSED = "shop/orders_paid.json"


@pytest.mark.parametrize("_case, source, unused", [
    ("the whole file name", 'fixture_bytes("shop", "orders_paid.json")', []),
    ("the name without .json", 'fixture_bytes("orders_paid")', []),
    ("named in a parametrisation", '@pytest.mark.parametrize("stem", ["orders_paid"])\ndef test_x(stem): ...', []),
    ("only a longer name that starts with it", 'fixture_bytes("orders_paid__guest_checkout")', [UNUSED]),
    ("only inside a longer path", 'open("tests/fixtures/shop/orders_paid.json")', [UNUSED]),
    ("only in a comment", '# orders_paid.json is the plain order\nfixture_bytes("x")', [UNUSED]),
    ("only through a glob", 'names = [p.name for p in FOLDER.glob("*.json")]', [UNUSED]),
])
def test_a_fixture_counts_as_used_only_when_named_exactly(tmp_path, _case, source, unused):
    # given a fixture folder with orders_paid.json and a test module with the source
    (tmp_path / "fixtures" / "shop").mkdir(parents=True)
    (tmp_path / "fixtures" / "shop" / "orders_paid.json").write_text("{}")
    (tmp_path / "fixtures" / "shop" / "README.md").write_text("captured by hand")
    (tmp_path / "test_shop.py").write_text(source + "\n")

    # then the fixture is used or not as the case says
    assert unused_fixtures(tmp_path / "fixtures", tmp_path) == unused


def test_a_prefix_no_longer_passes_for_the_shorter_fixture(tmp_path):
    # given orders_paid.json and orders_paid__guest_checkout.json, and a test naming only the second
    (tmp_path / "fixtures" / "shop").mkdir(parents=True)
    for name in ("orders_paid.json", "orders_paid__guest_checkout.json"):
        (tmp_path / "fixtures" / "shop" / name).write_text("{}")
    source = 'body = fixture_bytes("shop", "orders_paid__guest_checkout.json")\n'
    (tmp_path / "test_shop.py").write_text(source)

    # then the old rule (the stem anywhere in the test text) took orders_paid.json as used
    assert "orders_paid" in source
    # and the exact-name rule reports it
    assert unused_fixtures(tmp_path / "fixtures", tmp_path) == ["shop/orders_paid.json"]


def test_registry_names_match_connectors():
    # then each registered connector calls itself by its key
    assert {name: c.platform for name, c in CONNECTORS.items()} == {name: name for name in CONNECTORS}
