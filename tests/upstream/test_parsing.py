from datetime import UTC, datetime
from decimal import Decimal

import pytest

from upstream.calls.parsing import (
    ISTANBUL,
    ParseError,
    format_local,
    json_decimal,
    json_money,
    parse_local,
)


def test_json_decimal_reads_the_decimal_a_double_was_printed_from():
    assert json_decimal(2.675) == Decimal("2.675")
    assert json_decimal(" 12.50 ") == Decimal("12.50")
    assert json_decimal(7) == Decimal("7")


@pytest.mark.parametrize("value", [None, True, "abc", float("nan"), float("inf")])
def test_json_decimal_refuses_what_is_not_an_amount(value):
    with pytest.raises(ParseError):
        json_decimal(value)


def test_json_money_rounds_half_up_to_the_cent_without_negative_zero():
    assert json_money(2.675) == Decimal("2.68")
    assert json_money(3.779999999999999804600747665972448885440826416015625) == Decimal("3.78")
    assert str(json_money(-0.001)) == "0.00"


def test_parse_local_tries_each_format_in_istanbul_time():
    assert parse_local("01.02.2024", ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y")) == datetime(
        2024, 2, 1, tzinfo=ISTANBUL
    )
    with pytest.raises(ParseError):
        parse_local("2024-02-01", ("%d.%m.%Y",))


def test_parse_local_answers_a_repeated_date_the_same_and_refuses_a_bad_one_every_time():
    """Parsed dates are cached (a sync reads the same charge dates a hundred thousand times):
    the same text in other formats or another zone is its own entry, and a refusal is never
    remembered as an answer."""
    formats = ["%Y-%m-%d %H:%M:%S"]  # any iterable of formats, as before the cache
    first = parse_local("2032-04-04 07:00:00", formats)
    assert parse_local("2032-04-04 07:00:00", tuple(formats)) == first
    assert first == datetime(2032, 4, 4, 7, tzinfo=ISTANBUL)
    assert parse_local("2032-04-04 07:00:00", formats, tz=UTC) == datetime(
        2032, 4, 4, 7, tzinfo=UTC
    )
    for _ in range(2):
        with pytest.raises(ParseError):
            parse_local("2032-04-04", formats)
    assert parse_local("2032-04-04", ("%Y-%m-%d",)) == datetime(2032, 4, 4, tzinfo=ISTANBUL)


def test_format_local_writes_istanbul_wall_clock_and_takes_naive_as_local():
    assert format_local(datetime(2024, 1, 31, 21, 0, tzinfo=UTC), "%Y-%m-%d %H:%M") == (
        "2024-02-01 00:00"
    )
    assert format_local(datetime(2024, 1, 31, 21, 0), "%Y-%m-%d %H:%M") == "2024-01-31 21:00"
