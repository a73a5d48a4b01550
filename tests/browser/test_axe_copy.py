"""The vendored axe-core is the copy tests/fixtures/axe/README.md names, with its licence."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

AXE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "axe"


def test_vendored_axe_is_the_published_copy_with_its_licences():
    # given the vendored files and the README that names their source
    readme = (AXE_DIR / "README.md").read_text()
    script = (AXE_DIR / "axe.min.js").read_bytes()

    # then the script is the version and checksum the README gives, and the licences are there
    version = re.search(r"axe-core \*\*([\d.]+)\*\*", readme).group(1)
    assert script.startswith(f"/*! axe v{version}".encode())
    assert hashlib.sha256(script).hexdigest() in readme
    assert (AXE_DIR / "LICENSE").read_text().startswith("Mozilla Public License, version 2.0")
    assert (AXE_DIR / "LICENSE-3RD-PARTY.txt").read_text().strip()
