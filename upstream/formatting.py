"""Money and dates as finance staff read them: ₺ 1.234,56 and dd.MM.yyyy in Turkish."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.utils import formats, timezone

CURRENCY_SYMBOLS = {"TRY": "₺", "TL": "₺", "USD": "$", "EUR": "€", "GBP": "£"}


def money(amount: Decimal | int | float | None, currency: str = "TRY") -> str:
    if amount is None:
        return ""
    symbol = CURRENCY_SYMBOLS.get(currency or "TRY", currency)
    number = formats.number_format(Decimal(amount), 2, use_l10n=True, force_grouping=True)
    return f"{symbol}\u00a0{number}"


def day(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        return formats.date_format(value, "SHORT_DATETIME_FORMAT")
    return formats.date_format(value, "SHORT_DATE_FORMAT")
