"""Build the installable WordPress plugin zip (`make plugin` → dist/stammkunde-woocommerce.zip).

The zip holds the `stammkunde/` folder as WordPress expects it (Plugins → Add New → Upload),
with each `languages/*.po` compiled to `.mo` for the German locales WordPress uses (de_DE,
de_DE_formal, de_AT, de_CH; our texts address the customer formally, as the app's do).
Entries are sorted and dated 1980-01-01, so the same sources give the same bytes.

Usage: python connectors/woocommerce/wordpress-plugin/build.py [OUTPUT.zip]
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "stammkunde"
DEFAULT_OUTPUT = HERE.parents[2] / "dist" / "stammkunde-woocommerce.zip"
GERMAN_LOCALES = ("de_DE", "de_DE_formal", "de_AT", "de_CH")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def compiled_catalogs() -> dict[str, bytes]:
    """Return `languages/<domain>-<locale>.mo` bytes by path inside the plugin folder."""
    out: dict[str, bytes] = {}
    for po_path in sorted((SOURCE / "languages").glob("stammkunde-de_DE.po")):
        with po_path.open("rb") as fh:
            catalog = read_po(fh)
        for locale in GERMAN_LOCALES:
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            out[f"languages/stammkunde-{locale}.mo"] = buffer.getvalue()
    return out


def build(output: Path = DEFAULT_OUTPUT) -> Path:
    """Write the plugin zip to `output` and return its path."""
    files = {str(p.relative_to(SOURCE)): p.read_bytes() for p in SOURCE.rglob("*") if p.is_file()}
    files.update(compiled_catalogs())
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"stammkunde/{name}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name])
    tmp.replace(output)
    return output


if __name__ == "__main__":
    target = build(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_OUTPUT)
    print(f"built {target}")
