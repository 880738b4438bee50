"""Fail when the Turkish catalogue has an untranslated or fuzzy entry.

    .venv/bin/python locale/check.py     # `make messages` runs it after makemessages

`locale/tr/LC_MESSAGES/django.po` is the single source of the Turkish texts: edit it with any
gettext tool (Poedit, Lokalize, or by hand). `makemessages` adds new strings to it untranslated,
and marks changed ones fuzzy; this check lists both, so nothing reaches a user half-translated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polib

PO = Path(__file__).resolve().parent / "tr" / "LC_MESSAGES" / "django.po"


def problems(po: polib.POFile) -> list[str]:
    found = []
    for entry in po:
        if entry.obsolete:
            continue
        where = ""
        if entry.occurrences:
            where = " ({}:{})".format(*entry.occurrences[0])
        if "fuzzy" in entry.flags:
            found.append(f"fuzzy: {entry.msgid!r}{where}")
        elif not entry.translated():
            found.append(f"untranslated: {entry.msgid!r}{where}")
    return found


def main() -> int:
    po = polib.pofile(str(PO))
    found = problems(po)
    for line in found:
        print(line)
    print(
        f"{PO.relative_to(Path.cwd()) if PO.is_relative_to(Path.cwd()) else PO}: "
        f"{len(po.translated_entries())} translated, {len(found)} to do"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
