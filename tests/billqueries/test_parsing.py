"""Lines from text, CSV and xlsx: separators, names in any case, headers, every bad line."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook

from billqueries.client import InstitutionInfo
from billqueries.parsing import InstitutionIndex, fold, parse_dicts, parse_input
from billqueries.sync import institutions_reconcile

pytestmark = pytest.mark.django_db


def info(code, name, mask, additional=False) -> InstitutionInfo:
    return InstitutionInfo(code, name, "", "", "Abone No", "", mask, True, additional, False)


@pytest.fixture
def index() -> InstitutionIndex:
    institutions_reconcile(
        [
            info(1, "İSKİ", "9999999####"),
            info(3, "İZSU", "999999999"),
            info(10, "CK Boğaziçi Elektrik", "9999999999"),
            info(21, "Başkentgaz", "A9999999"),
            info(30, "Türk Telekom", "9999999999", additional=True),
            info(40, "Şehir Su", "99999"),
            info(41, "Şehir Su", "99999"),
        ]
    )
    return InstitutionIndex.load()


def parse(index, text):
    return parse_input(text=text, index=index)


@pytest.mark.parametrize(
    "text",
    [
        "1;01345677000",
        "1,01345677000",
        "1\t01345677000",
        "1 01345677000",
        "  1 ;  01345677000 ; ",
        "İSKİ 01345677000",
        "iski;01345677000",
        "ISKI,01345677000",
        "Iski\t01345677000",
    ],
)
def test_separators_and_names(index, text) -> None:
    [parsed], invalid = parse(index, text)
    assert invalid == [] and (parsed.soot_code, parsed.subscriber_no) == (1, "01345677000")


def test_names_with_spaces_and_turkish_letters(index) -> None:
    valid, invalid = parse(
        index,
        "CK Boğaziçi Elektrik 0123456789\n"
        "ck bogazici elektrik;0123456789;\n"
        "CK BOĞAZİÇİ 1123456789\n"  # a unique start of the name
        "TÜRK TELEKOM 2125550101 7712345\n"
        "baskentgaz B1234567",
    )
    assert [(v.number, v.soot_code, v.additional_no) for v in valid] == [
        (1, 10, ""),
        (3, 10, ""),
        (4, 30, "7712345"),
        (5, 21, ""),
    ]
    assert [(i.number, i.reason) for i in invalid] == [(2, "Same query as line 1.")]


def test_every_invalid_line_has_its_number_and_reason(index) -> None:
    valid, invalid = parse(
        index,
        "1;01345677000\n"
        "\n"
        "# comments and blank lines are skipped\n"
        "99;123\n"
        "Nowhere;1234567\n"
        "Şehir Su;12345\n"
        "3;12345\n"
        "30;2125550101\n"
        "1\n"
        "1;2;3;4\n"
        f"1;{'9' * 70}\n",
    )
    assert [v.number for v in valid] == [1]
    reasons = {i.number: i.reason for i in invalid}
    assert list(reasons) == [4, 5, 6, 7, 8, 9, 10, 11]
    assert reasons[4] == "No institution has the code 99."
    assert reasons[5] == "No institution is called “Nowhere”."
    assert "matches several institutions (40, 41)" in reasons[6]
    assert "expects the Abone No as 9 digits" in reasons[7]
    assert "needs the additional number" in reasons[8]
    assert reasons[9].startswith("Give the institution and the subscriber number")
    assert reasons[10].startswith("Too many fields")
    assert "longer than 64" in reasons[11]


def test_a_header_line_is_skipped_only_at_the_top(index) -> None:
    valid, invalid = parse(index, "Kurum;Abone No;Ek No\n1;01345677000\nKurum;Abone No")
    assert [v.number for v in valid] == [2] and [i.number for i in invalid] == [3]


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


@pytest.mark.parametrize(
    "data",
    [
        "\ufeffKurum;Abone No;Ek No\r\n1;01345677000;\r\n30;2125550101;7712345\r\n3;1\r\n".encode(),
        b"soot_code,subscriber_no,additional_no\n1,01345677000,\n30,2125550101,7712345\n3,1,\n",
        "1;01345677000\n30;2125550101;7712345\n3;1\n".encode("cp1254"),
        b'"1";"01345677000"\n"30";"2125550101";"7712345"\n"3";"1"\n',
    ],
)
def test_csv_with_or_without_bom_and_header(index, data) -> None:
    valid, invalid = parse_input(upload=upload("x.csv", data), index=index)
    assert [(v.soot_code, v.subscriber_no, v.additional_no) for v in valid] == [
        (1, "01345677000", ""),
        (30, "2125550101", "7712345"),
    ]
    assert len(invalid) == 1 and "9 digits" in invalid[0].reason
    assert invalid[0].number == (4 if data.startswith((b"\xef", b"soot")) else 3)


def test_csv_in_windows_1254_keeps_turkish_names(index) -> None:
    valid, invalid = parse_input(
        upload=upload("x.csv", "İZSU;123456789\n".encode("cp1254")), index=index
    )
    assert [v.soot_code for v in valid] == [3] and invalid == []


def xlsx(rows) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_xlsx_rows_with_numbers_names_and_blanks(index) -> None:
    data = xlsx(
        [
            ["Kurum", "Abone No", "Ek No"],
            [1, 1345677000, None],
            [None, None, None],
            ["türk telekom", "2125550101", 7712345],
            ["İZSU", 12345, None],
            [1.0, 1345600.0],
        ]
    )
    valid, invalid = parse_input(upload=upload("lines.xlsx", data), index=index)
    assert [(v.number, v.soot_code, v.subscriber_no, v.additional_no) for v in valid] == [
        (2, 1, "1345677000", ""),
        (4, 30, "2125550101", "7712345"),
        (6, 1, "1345600", ""),
    ]
    assert [(i.number, i.text) for i in invalid] == [(5, "İZSU; 12345")]


def test_unreadable_or_unsupported_files_are_refused(index) -> None:
    with pytest.raises(ValidationError, match="not a readable Excel"):
        parse_input(upload=upload("x.xlsx", b"PK\x03\x04 not really a zip"), index=index)
    with pytest.raises(ValidationError, match=r"\.xls files"):
        parse_input(upload=upload("old.xls", b"\xd0\xcf\x11\xe0"), index=index)
    with pytest.raises(ValidationError, match="empty"):
        parse_input(upload=upload("x.csv", b"  \n"), index=index)


def test_dict_lines_keep_their_numbers(index) -> None:
    valid, invalid = parse_dicts(
        [
            {"soot_code": 1, "subscriber_no": "01345677000"},
            {"soot_code": "3", "subscriber_no": "1", "number": 7},
            {"soot_code": None, "subscriber_no": "1"},
        ],
        index,
    )
    assert [v.number for v in valid] == [1]
    assert [(i.number, i.text) for i in invalid] == [(7, "3;1"), (3, ";1")]


def test_fold_is_case_and_turkish_insensitive() -> None:
    assert fold("İSKİ") == fold("iski") == fold("ISKI") == fold("ıskı") == "iski"
    assert fold("  Çağrı   ŞÜÖĞ ") == "cagri suog"
