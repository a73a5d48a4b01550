"""Our WordPress plugin (connectors/woocommerce/wordpress-plugin): `php -l` on every PHP file, its
PHPUnit suite (WordPress and WooCommerce stubbed in tests/bootstrap.php), the installable zip and
its German catalog. Skipped only where php or phpunit is not installed (`make test` installs
Debian's php-cli and phpunit)."""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

PLUGIN_ROOT = Path(__file__).resolve().parents[3] / "connectors" / "woocommerce" / "wordpress-plugin"
PLUGIN = PLUGIN_ROOT / "stammkunde"
PHP_FILES = sorted(PLUGIN_ROOT.rglob("*.php"))
_TEXT = re.compile(r"""(?:__|esc_html__|esc_attr__)\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*'stammkunde'\s*\)""")
_PLURAL = re.compile(r"""_n\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*'((?:[^'\\]|\\.)*)'\s*,[^,]+,\s*'stammkunde'\s*\)""")

needs_php = pytest.mark.skipif(shutil.which("php") is None, reason="php is not installed (make test installs php-cli)")
needs_phpunit = pytest.mark.skipif(shutil.which("phpunit") is None or shutil.which("php") is None,
                                   reason="phpunit is not installed (make test installs Debian's phpunit)")


def _build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("stammkunde_plugin_build", PLUGIN_ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_php
@pytest.mark.parametrize("path", PHP_FILES, ids=[str(p.relative_to(PLUGIN_ROOT)) for p in PHP_FILES])
def test_php_file_has_no_syntax_error(path):
    # when PHP checks the file
    result = subprocess.run(["php", "-l", str(path)], capture_output=True, text=True, timeout=60)

    # then it finds nothing
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No syntax errors detected" in result.stdout


@needs_phpunit
def test_phpunit_suite_passes():
    # when the plugin's PHPUnit suite runs against the WordPress/WooCommerce stubs
    result = subprocess.run(["phpunit", "-c", str(PLUGIN_ROOT / "phpunit.xml.dist")], capture_output=True,
                            text=True, timeout=300, cwd=PLUGIN_ROOT)

    # then every test passes, with no warning, notice or risky test
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"OK \((\d+) tests, (\d+) assertions\)", result.stdout)
    assert summary is not None, result.stdout
    assert int(summary.group(1)) >= 40


def test_build_makes_an_installable_zip_with_german_texts(tmp_path):
    # when the plugin is built (what `make plugin` runs)
    target = _build_module().build(tmp_path / "stammkunde-woocommerce.zip")

    # then the zip holds the plugin folder WordPress installs, without the tests
    with zipfile.ZipFile(target) as zf:
        names = set(zf.namelist())
        main = zf.read("stammkunde/stammkunde.php").decode()
        mo = read_mo(io.BytesIO(zf.read("stammkunde/languages/stammkunde-de_DE.mo")))
    assert {"stammkunde/stammkunde.php", "stammkunde/uninstall.php", "stammkunde/readme.txt",
            "stammkunde/assets/blocks.js", "stammkunde/languages/stammkunde-de_DE_formal.mo"} <= names
    assert all(n.startswith("stammkunde/") for n in names)
    assert not any("/tests/" in n for n in names)
    assert "License:           GPL-2.0-or-later" in main and "Text Domain:       stammkunde" in main
    # and German shoppers read German
    assert mo.get("Points").string == "Punkte"
    assert list(mo.get("%s point").string) == ["%s Punkt", "%s Punkte"]
    # and the same sources give the same bytes
    again = _build_module().build(tmp_path / "again.zip")
    assert again.read_bytes() == target.read_bytes()


def test_every_text_of_the_plugin_has_a_german_translation():
    # given every text the plugin passes to the WordPress i18n functions
    sources = "\n".join(p.read_text(encoding="utf-8") for p in sorted(PLUGIN.rglob("*.php")))
    singles = {m.group(1).replace("\\'", "'") for m in _TEXT.finditer(sources)}
    plurals = {m.group(1).replace("\\'", "'") for m in _PLURAL.finditer(sources)}

    # when the German catalog is read
    with (PLUGIN / "languages" / "stammkunde-de_DE.po").open("rb") as fh:
        catalog = read_po(fh)
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in catalog if m.id}

    # then each has a translation, and the catalog holds no text the plugin no longer uses
    assert singles and plurals
    missing = sorted(t for t in singles | plurals if not translated.get(t))
    assert missing == []
    assert sorted(set(translated) - singles - plurals) == []


def test_the_plugin_folder_is_no_python_package():
    # when setuptools looks for the packages pyproject.toml includes
    from setuptools import find_packages

    found = find_packages(where=str(PLUGIN_ROOT.parents[2]), include=["app*", "connectors*", "jobs*"])

    # then nothing of the plugin is packaged, and pytest collects nothing there (testpaths = tests)
    assert not any("wordpress" in name or "plugin.stammkunde" in name for name in found)
    assert [p.name for p in PLUGIN_ROOT.rglob("*.py")] == ["build.py"]
