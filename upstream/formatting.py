"""Money and dates as finance staff read them: ₺ 1.234,56 and dd.MM.yyyy in Turkish."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import formats, timezone

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
