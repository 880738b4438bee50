"""The mask syntax of payofin.md §9 assumption 16, unit by unit."""

from __future__ import annotations

import pytest

from billqueries.masks import MaskError, mask_matches, parse_mask, subscriber_no_errors
from billqueries.models import Institution


@pytest.mark.parametrize(
    ("mask", "value", "ok"),
    [
        ("9999999999", "0123456789", True),
        ("9999999999", "012345678", False),
        ("9999999999", "01234567890", False),
        ("9999999999", "01234x6789", False),
        ("9999999999", "０１２３４５６７８９", False),  # ASCII digits only
        ("99999999###", "12345678", True),
        ("99999999###", "12345678901", True),
        ("99999999###", "1234567", False),
        ("99999999###", "123456789012", False),
        ("99999999###", "12345678a", False),
        ("9999999####", "1345600", True),  # İSKİ: the published sample's 7-digit number
        ("A9999999", "B1234567", True),
        ("A9999999", "Ç1234567", True),  # a Turkish letter is a letter
        ("A9999999", "11234567", False),
        ("***", "a1Z", True),
        ("***", "a-Z", False),
        ("SOL-*******", "SOL-AB12345", True),
        ("SOL-*******", "SOL_AB12345", False),
        ("SOL-*******", "sol-AB12345", False),  # literals are exact
        ("(999) 999 99 99", "(212) 555 01 01", True),
        ("(999) 999 99 99", "2125550101", False),
        ("", "anything at all", True),
        ("9##", "1", True),
        ("9##", "", False),
    ],
)
def test_mask_matches(mask, value, ok) -> None:
    assert mask_matches(mask, value) is ok


@pytest.mark.parametrize("mask", ["#999", "99#9", "9#A"])
def test_optional_digits_only_after_the_required_ones(mask) -> None:
    with pytest.raises(MaskError, match="only after"):
        parse_mask(mask)


@pytest.mark.parametrize(
    ("mask", "text"),
    [
        ("9999999999", "10 digits"),
        ("99999999###", "8 to 11 digits"),
        ("A9999999", "the format A9999999"),
    ],
)
def test_describe(mask, text) -> None:
    assert parse_mask(mask).describe().startswith(text)


def institution(**kwargs) -> Institution:
    return Institution(soot_code=1, name="İSKİ", field_title="Abone Numarası", **kwargs)


def test_errors_name_the_rule_and_the_additional_number() -> None:
    inst = institution(mask="999999999", additional_no_required=True)
    assert subscriber_no_errors(inst, "123456789", "5") == []
    [mask_error, additional] = subscriber_no_errors(inst, "12345", "")
    assert "İSKİ expects the Abone Numarası as 9 digits" in mask_error and "12345" in mask_error
    assert "additional number" in additional
    assert subscriber_no_errors(institution(mask=""), "", "") == ["The Abone Numarası is missing."]
    assert subscriber_no_errors(institution(mask="", subscriber_required=False), "", "") == []


def test_a_mask_outside_the_syntax_is_left_to_payofin() -> None:
    assert subscriber_no_errors(institution(mask="9#9"), "whatever", "") == []
