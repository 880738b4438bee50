"""Fill the Turkish catalogue from tr.json (msgid -> msgstr; plurals as [one, other]).

    .venv/bin/python locale/translate.py          # after `make messages`; then compilemessages

Keeping the translations in one JSON file makes them reviewable in a diff; gettext tools still
own the .po format. Reports every msgid that has no translation yet.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PO = HERE / "tr" / "LC_MESSAGES" / "django.po"
TRANSLATIONS = HERE / "tr.json"

ENTRY = re.compile(
    r"((?:#.*\n)*)((?:msgctxt .*\n(?:\".*\"\n)*)?)msgid ((?:\".*\"\n)+)"
    r"(msgid_plural ((?:\".*\"\n)+))?((?:msgstr.*\n(?:\".*\"\n)*)+)"
)


def _unquote(block: str) -> str:
    return "".join(json.loads(line) for line in block.strip().splitlines())


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def main() -> int:
    table: dict[str, str | list[str]] = json.loads(TRANSLATIONS.read_text(encoding="utf-8"))
    text = PO.read_text(encoding="utf-8")
    missing: list[str] = []

    def fill(match: re.Match) -> str:
        comments, ctx, msgid_block, plural_part, plural_block, _ = match.groups()
        msgid = _unquote(msgid_block)
        if not msgid:
            return match.group(0)
        value = table.get(msgid)
        comments = comments.replace("#, fuzzy\n", "")
        head = f"{comments}{ctx}msgid {msgid_block}"
        if plural_part:
            head += f"msgid_plural {plural_block}"
            if not isinstance(value, list):
                missing.append(msgid)
                return f'{head}msgstr[0] ""\nmsgstr[1] ""\n'
            return f"{head}msgstr[0] {_quote(value[0])}\nmsgstr[1] {_quote(value[1])}\n"
        if not isinstance(value, str):
            missing.append(msgid)
            return f'{head}msgstr ""\n'
        return f"{head}msgstr {_quote(value)}\n"

    text = ENTRY.sub(fill, text)
    text = text.replace('"Language: \\n"', '"Language: tr\\n"')
    text = re.sub(
        r'"Plural-Forms: .*\\n"', lambda _: '"Plural-Forms: nplurals=2; plural=(n > 1);\\n"', text
    )
    text = text.replace('#, fuzzy\nmsgid ""\nmsgstr ""', 'msgid ""\nmsgstr ""', 1)
    PO.write_text(text, encoding="utf-8")
    for msgid in missing:
        print(f"untranslated: {msgid!r}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
