"""Money and dates as finance staff read them: ₺ 1.234,56 and dd.MM.yyyy in Turkish."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import formats, timezone
from django.utils.translation import gettext as _

CURRENCY_SYMBOLS = {"TRY": "₺", "TL": "₺", "USD": "$", "EUR": "€", "GBP": "£"}
KURUS = Decimal("0.01")


def money(amount: Decimal | int | float | None, currency: str = "TRY") -> str:
    if amount is None:
        return ""
    symbol = CURRENCY_SYMBOLS.get(currency or "TRY", currency)
    # Round to the kuruş first: number_format cuts extra digits, and SQLite sums decimals as
    # floats (86937.3899999998), which would show one kuruş short.
    exact = Decimal(amount).quantize(KURUS, rounding=ROUND_HALF_UP)
    number = formats.number_format(exact, 2, use_l10n=True, force_grouping=True)
    return f"{symbol}\u00a0{number}"


def day(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        return formats.date_format(value, "SHORT_DATETIME_FORMAT")
    return formats.date_format(value, "SHORT_DATE_FORMAT")


def parse_amount(text: str) -> str:
    """An amount as typed, in Turkish ("2.500,00") or plain ("2500.00"), as a plain decimal string.

    With both separators the last one is the decimal mark. With one kind only, it is the decimal
    mark when it is the active language's, or when it is used once and not followed by exactly
    three digits ("2500.00" in Turkish); otherwise it groups thousands ("2.500", "1,234,567").
    The result is for Decimal() to judge; anything unreadable is returned as typed.
    """
    value = (text or "").strip().replace("\u00a0", "").replace(" ", "").replace("₺", "")
    if "." in value and "," in value:
        mark = "," if value.rfind(",") > value.rfind(".") else "."
        group = "." if mark == "," else ","
        return value.replace(group, "").replace(mark, ".")
    for sep in (",", "."):
        if sep not in value:
            continue
        head, _, tail = value.rpartition(sep)
        local_mark = formats.get_format("DECIMAL_SEPARATOR", use_l10n=True)
        if value.count(sep) == 1 and (sep == local_mark or len(tail) != 3):
            return f"{head}.{tail}"
        return value.replace(sep, "")
    return value


def duration(milliseconds: int | None) -> str:
    """A call's duration as read: "850 ms", "15,0 sn" ("15.0 s"), never "15.004" ms."""
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return _("%(ms)s ms") % {"ms": milliseconds}
    seconds = formats.number_format(Decimal(milliseconds) / 1000, 1, use_l10n=True)
    return _("%(seconds)s s") % {"seconds": seconds}
