"""Spreadsheet cells that stay inert: no formula from an upstream's text (OWASP CSV injection).

A name WiseCP or Paynet sends as `=HYPERLINK("http://evil","Click")` would open in Excel or
LibreOffice as a live formula (a link, a DDE command) in our CSV and XLSX exports. Every text
cell that starts with a character a spreadsheet reads as the start of a formula (=, +, -, @,
a tab, a carriage return) gets a leading apostrophe, as OWASP's CSV injection page advises;
masked values too ("=H***"). Numbers stay numbers: a real number is not text, and a text that
is only a number ("-1.234,56", a formatted amount) cannot run anything, so it is left alone.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A signed number as we write it in a CSV ("-1.234,56", "-1,234.56", "+5"): inert, kept as is.
_PLAIN_NUMBER = re.compile(r"[+-]?\d[\d.,]*")


def inert(value: Any) -> Any:
    """`value` safe for a spreadsheet cell: a text that would start a formula gets a leading
    apostrophe; anything that is not text (numbers, dates) comes back unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value
