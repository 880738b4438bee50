"""The Turkish catalogue check that `make messages` (and CI) runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polib
import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("locale_check", ROOT / "locale" / "check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def _po(*entries: polib.POEntry) -> polib.POFile:
    po = polib.POFile()
    for entry in entries:
        po.append(entry)
    return po


def test_flags_untranslated_and_fuzzy_entries() -> None:
    po = _po(
        polib.POEntry(msgid="Done", msgstr="Tamam"),
        polib.POEntry(msgid="Missing", msgstr=""),
        polib.POEntry(msgid="Guessed", msgstr="Tahmin", flags=["fuzzy"]),
        polib.POEntry(
            msgid="%(n)s item", msgid_plural="%(n)s items", msgstr_plural={0: "%(n)s kalem", 1: ""}
        ),
    )
    found = check.problems(po)
    assert found == [
        "untranslated: 'Missing'",
        "fuzzy: 'Guessed'",
        "untranslated: '%(n)s item'",
    ]


def test_the_committed_catalogue_is_complete() -> None:
    assert check.problems(polib.pofile(str(check.PO))) == []


@pytest.mark.parametrize(
    ("msgid", "turkish"),
    [
        # msgmerge had flagged these fuzzy, so gettext skipped them: Turkish pages showed English.
        ("Follow it in job #%(id)s.", "#%(id)s numaralı işten takip edin."),
        ("All %(count)s selected", "%(count)s kaydın tümü seçildi"),
    ],
)
def test_formerly_fuzzy_strings_render_in_turkish(msgid: str, turkish: str) -> None:
    with translation.override("tr"):
        assert translation.gettext(msgid) == turkish


def test_failed_count_is_turkish_on_the_dashboard() -> None:
    with translation.override("tr"):
        text = translation.ngettext("%(counter)s failed", "%(counter)s failed", 1)
    assert text == "%(counter)s başarısız"
