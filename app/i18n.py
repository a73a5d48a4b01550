"""Texts the domain writes into rows (discount titles), in the customer's or the shop's language.

The same catalogs as the customer page (`app/translations`: English message ids, German
translations, updated as app/translations/babel.cfg says), read without Flask: each language's
`.po` file is compiled in memory once per process. A language without a catalog gets the
English id itself.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

TRANSLATIONS = Path(__file__).resolve().parent / "translations"


@lru_cache(maxsize=8)
def translations(language: str) -> NullTranslations:
    """Return the catalog of `language` ("de", "en"); use as `translations(lang).gettext("...")`."""
    po_path = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    if not po_path.is_file():
        return NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)
