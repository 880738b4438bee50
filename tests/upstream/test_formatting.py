"""Money and dates as staff read them, in Turkish and in English."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.utils import translation

from upstream.l10n.formats import day, money, parse_amount


@pytest.mark.parametrize(
    ("language", "amount", "expected"),
    [
        ("tr", Decimal("1234.56"), "₺\u00a01.234,56"),
        ("en", Decimal("1234.56"), "₺\u00a01,234.56"),
        ("tr", Decimal("0"), "₺\u00a00,00"),
        ("tr", Decimal("-50.5"), "₺\u00a0-50,50"),
        # SQLite sums decimals as floats: round to the kuruş, never cut it off.
        ("tr", 86937.3899999998, "₺\u00a086.937,39"),
        ("tr", Decimal("2.675"), "₺\u00a02,68"),
    ],
)
def test_money_rounds_to_the_kurus_in_the_active_language(language, amount, expected):
    with translation.override(language):
        assert money(amount) == expected


def test_money_uses_the_invoice_currency_symbol():
    with translation.override("tr"):
        assert money(Decimal("10"), "USD") == "$\u00a010,00"
        assert money(Decimal("10"), "CHF") == "CHF\u00a010,00"
    assert money(None) == ""


def test_dates_read_dd_mm_yyyy_in_istanbul_time():
    with translation.override("tr"):
        assert day(date(2026, 3, 9)) == "09.03.2026"
        assert day(datetime(2026, 3, 9, 21, 30, tzinfo=UTC)) == "10.03.2026 00:30"
    assert day(None) == ""


@pytest.mark.parametrize(
    ("language", "typed", "read"),
    [
        ("tr", "2.500,00", "2500.00"),
        ("tr", "2500.00", "2500.00"),
        ("tr", "2.500", "2500"),
        ("tr", "34,56", "34.56"),
        ("tr", "1.234.567,89", "1234567.89"),
        ("tr", "₺ 1.234,56", "1234.56"),
        ("en", "2,500.00", "2500.00"),
        ("en", "2500.00", "2500.00"),
        ("en", "2.500,00", "2500.00"),
        ("en", "2,500", "2500"),
        ("en", "1.005", "1.005"),
        ("en", "abc", "abc"),
    ],
)
def test_parse_amount_reads_turkish_and_plain_amounts(language, typed, read):
    with translation.override(language):
        assert parse_amount(typed) == read
