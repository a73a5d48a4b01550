"""Every supported topic has a fixture, and every fixture is used by some test."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import CONNECTORS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TESTS = Path(__file__).resolve().parent.parent


def _slug(platform: str, topic: str) -> str:
    return topic.replace("/", "_").replace(".", "_")


def _test_sources() -> str:
    return "\n".join(p.read_text() for p in TESTS.rglob("test_*.py"))


@pytest.mark.parametrize("platform", sorted(CONNECTORS))
def test_every_topic_has_a_fixture(platform):
    # given the fixture files of the platform
    stems = {p.name.split(".")[0].split("__")[0] for p in (FIXTURES / platform).glob("*.json")}

    # then each supported topic has at least one
    missing = [t for t in CONNECTORS[platform].SUPPORTED_TOPICS if _slug(platform, t) not in stems]
    assert missing == []


@pytest.mark.parametrize("platform", sorted(CONNECTORS))
def test_every_fixture_is_used(platform):
    # given all test sources
    sources = _test_sources()

    # then every fixture file name appears in a test
    files = [p for p in (FIXTURES / platform).iterdir() if p.suffix in {".json", ".txt"}]
    unused = [p.name for p in files if p.name not in sources and p.stem not in sources]
    assert unused == []


def test_registry_names_match_connectors():
    # then each registered connector calls itself by its key
    assert {name: c.platform for name, c in CONNECTORS.items()} == {name: name for name in CONNECTORS}
