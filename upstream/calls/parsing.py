"""Reading and writing the values upstream JSON carries: amounts and local date-times.

Only the mechanics live here; each client keeps its upstream's formats and zero values as
constants and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

# All three upstreams read and write wall-clock time in Turkey.
ISTANBUL = ZoneInfo("Europe/Istanbul")
CENT = Decimal("0.01")


class ParseError(ValueError):
    """A value in an answer is not what the upstream's document describes."""


def json_decimal(value: Any) -> Decimal:
    """A JSON number (or Decimal/str) as the exact decimal the upstream meant.

    json gives us a binary double; its shortest repr is the decimal that was printed, so 2.675
    stays 2.675 instead of its exact expansion 2.67499... (wisecp.md §3, payofin.md §4).
    """
    if isinstance(value, bool) or value is None:
        raise ParseError(f"not an amount: {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ParseError(f"not an amount: {value!r}") from None
    if not number.is_finite():
        raise ParseError(f"not an amount: {value!r}")
    return number


def json_money(value: Any) -> Decimal:
    """An amount rounded half-up to the cent; "+ 0" turns -0.00 into 0.00."""
    return json_decimal(value).quantize(CENT, rounding=ROUND_HALF_UP) + 0


def parse_local(text: str, formats: Iterable[str], *, tz: ZoneInfo = ISTANBUL) -> datetime:
    """A wall-clock date-time in the first of `formats` that reads it, made aware in `tz`."""
    return _parse_local(text, tuple(formats), tz)


@lru_cache(maxsize=8192)
def _parse_local(text: str, formats: tuple[str, ...], tz: ZoneInfo) -> datetime:
    # Cached: a sync reads the same few charge dates in a hundred thousand records, and
    # strptime was a tenth of its parsing (a datetime is immutable, safe to share).
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ParseError(f"not a date in {', '.join(formats)}: {text!r}")


def format_local(value: datetime, fmt: str, *, tz: ZoneInfo = ISTANBUL) -> str:
    """An aware date-time as `tz`'s wall clock; a naive one is taken as already in `tz`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(tz).strftime(fmt)
