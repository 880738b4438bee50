"""Bill-query lines from typed or pasted text, a CSV file or an Excel (xlsx) file.

Each line names an institution (its code, or its name in any case, with or without Turkish
letters) and a subscriber number, optionally followed by the bill's additional number. Every
line is checked against the institution's rules here, so staff see each bad line with its line
number and reason before anything is sent to Payofin.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .masks import subscriber_no_errors
from .models import BillQueryBatch, Institution

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_FIELD_LENGTH = 64
TEXT_SEPARATORS = (";", "\t", ",")


@dataclass(frozen=True)
class ParsedLine:
    number: int  # line (or row) number in what staff gave us, from 1
    institution: Institution
    subscriber_no: str
    additional_no: str = ""

    @property
    def soot_code(self) -> int:
        return self.institution.soot_code

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "soot_code": self.soot_code,
            "subscriber_no": self.subscriber_no,
            "additional_no": self.additional_no,
        }


@dataclass(frozen=True)
class InvalidLine:
    number: int
    text: str
    reason: str


@dataclass(frozen=True)
class RawRow:
    number: int
    fields: list[str]
    text: str


def fold(text: str) -> str:
    """Case- and Turkish-insensitive form of a name: "İSKİ", "iski" and "ISKI" are equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", plain.lower().replace("ı", "i")).strip()


class InstitutionIndex:
    """Finds an institution by code or by name."""

    def __init__(self, institutions: Iterable[Institution]) -> None:
        self.by_code: dict[int, Institution] = {}
        self.by_name: dict[str, list[Institution]] = {}
        self._found: dict[str, tuple[Institution | None, str]] = {}
        for inst in institutions:
            self.by_code[inst.soot_code] = inst
            self.by_name.setdefault(fold(inst.name), []).append(inst)

    @classmethod
    def load(cls) -> InstitutionIndex:
        return cls(Institution.objects.all())

    def find(self, text: str) -> tuple[Institution | None, str]:
        """(institution, "") or (None, why not)."""
        text = text.strip()
        if text not in self._found:
            self._found[text] = self._find(text)
        return self._found[text]

    def _find(self, text: str) -> tuple[Institution | None, str]:
        if not text:
            return None, _("The institution is missing.")
        if text.isascii() and text.isdigit():
            inst = self.by_code.get(int(text))
            if inst is None:
                return None, _("No institution has the code %(code)s.") % {"code": text}
            return inst, ""
        key = fold(text)
        matches = self.by_name.get(key)
        if matches is None and len(key) >= 3:
            # A unique start of a name will do: "ck bogazici" for "CK Boğaziçi Elektrik".
            matches = [
                i for name, insts in self.by_name.items() if name.startswith(key) for i in insts
            ]
        if not matches:
            return None, _("No institution is called “%(name)s”.") % {"name": text}
        if len(matches) > 1:
            return None, _("“%(name)s” matches several institutions (%(codes)s); use the code.") % {
                "name": text,
                "codes": ", ".join(str(i.soot_code) for i in matches),
            }
        return matches[0], ""

    def names(self, text: str) -> bool:
        return self.find(text)[0] is not None


def split_text_line(line: str, index: InstitutionIndex) -> list[str]:
    for sep in TEXT_SEPARATORS:
        if sep in line:
            return [f.strip() for f in line.split(sep)]
    tokens = line.split()
    if len(tokens) <= 1 or (tokens[0].isascii() and tokens[0].isdigit()):
        return tokens
    # Separated by spaces, and names have spaces too: take the longest start that names one.
    for n in range(len(tokens) - 1, 0, -1):
        head = " ".join(tokens[:n])
        if index.names(head):
            return [head, *tokens[n:]]
    return tokens


def rows_from_text(text: str, index: InstitutionIndex) -> Iterator[RawRow]:
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().lstrip("\ufeff")
        if line and not line.startswith("#"):
            yield RawRow(number, split_text_line(line, index), line)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Turkish Excel saves "CSV" as Windows-1254 unless asked for UTF-8.
        return data.decode("cp1254", errors="replace")


def rows_from_csv(data: bytes) -> Iterator[RawRow]:
    text = _decode(data)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(TEXT_SEPARATORS, key=first.count) if first else ";"
    if first.count(delimiter) == 0:
        delimiter = ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for fields in reader:
        cleaned = [f.strip() for f in fields]
        if any(cleaned):
            yield RawRow(reader.line_num, cleaned, delimiter.join(cleaned))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number cell: 1345677000.0 is "1345677000"
    return str(value).strip()


def rows_from_xlsx(data: bytes) -> Iterator[RawRow]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ValidationError(_("The file is not a readable Excel (.xlsx) file.")) from error
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            fields = [_cell_text(v) for v in values]
            while fields and not fields[-1]:
                fields.pop()
            if any(fields):
                yield RawRow(number, fields, "; ".join(fields))
    finally:
        workbook.close()


def file_source(name: str, data: bytes) -> str:
    lower = (name or "").lower()
    if lower.endswith(".xls"):
        raise ValidationError(_("Old .xls files cannot be read; save it as .xlsx or CSV."))
    if lower.endswith(".xlsx") or data[:2] == b"PK":
        return BillQueryBatch.Source.XLSX
    return BillQueryBatch.Source.CSV


def read_upload(upload: BinaryIO) -> tuple[str, bytes]:
    """(source, bytes) of an uploaded file, refusing what we cannot or should not read."""
    data = upload.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError(
            _("The file is larger than %(mb)s MB.") % {"mb": MAX_FILE_BYTES // (1024 * 1024)}
        )
    if not data.strip():
        raise ValidationError(_("The file is empty."))
    return file_source(getattr(upload, "name", ""), data), data


def _is_header(row: RawRow, index: InstitutionIndex) -> bool:
    # "Kurum;Abone No;Ek No": no institution, no digit in the subscriber column.
    subscriber = row.fields[1] if len(row.fields) > 1 else ""
    return not index.names(row.fields[0]) and not any(ch.isdigit() for ch in subscriber)


def check_rows(
    rows: Iterable[RawRow], index: InstitutionIndex, *, header: bool = True
) -> tuple[list[ParsedLine], list[InvalidLine]]:
    """Each row valid or with its reason; a first row that is a header is skipped."""
    valid: list[ParsedLine] = []
    invalid: list[InvalidLine] = []
    seen: dict[tuple[int, str, str], int] = {}
    for row in rows:
        if header:
            header = False
            if _is_header(row, index):
                continue
        line, reason = check_fields(row.number, row.fields, index)
        if line is None:
            invalid.append(InvalidLine(row.number, row.text, reason))
            continue
        key = (line.soot_code, line.subscriber_no, line.additional_no)
        if key in seen:
            reason = _("Same query as line %(line)s.") % {"line": seen[key]}
            invalid.append(InvalidLine(row.number, row.text, reason))
            continue
        seen[key] = row.number
        valid.append(line)
    return valid, invalid


def check_fields(
    number: int, fields: list[str], index: InstitutionIndex
) -> tuple[ParsedLine | None, str]:
    fields = list(fields)
    while fields and not fields[-1]:
        fields.pop()
    if len(fields) < 2:
        return None, _(
            "Give the institution and the subscriber number (and the additional number if needed)."
        )
    if len(fields) > 3:
        return None, _("Too many fields: institution, subscriber number, additional number.")
    institution, reason = index.find(fields[0])
    if institution is None:
        return None, reason
    if not institution.active:
        return None, _("%(institution)s is no longer in Payofin's list.") % {
            "institution": institution.name
        }
    subscriber_no = fields[1].strip()
    additional_no = fields[2].strip() if len(fields) > 2 else ""
    if len(subscriber_no) > MAX_FIELD_LENGTH or len(additional_no) > MAX_FIELD_LENGTH:
        return None, _("A number is longer than %(max)s characters.") % {"max": MAX_FIELD_LENGTH}
    errors = subscriber_no_errors(institution, subscriber_no, additional_no)
    if errors:
        return None, " ".join(errors)
    return ParsedLine(number, institution, subscriber_no, additional_no), ""


def parse_input(
    *, text: str = "", upload: BinaryIO | None = None, index: InstitutionIndex | None = None
) -> tuple[list[ParsedLine], list[InvalidLine]]:
    index = index or InstitutionIndex.load()
    if upload is not None:
        source, data = read_upload(upload)
        rows = rows_from_xlsx(data) if source == BillQueryBatch.Source.XLSX else rows_from_csv(data)
        return check_rows(rows, index)
    return check_rows(rows_from_text(text, index), index)


def parse_dicts(
    lines: Iterable[Mapping[str, Any]], index: InstitutionIndex | None = None
) -> tuple[list[ParsedLine], list[InvalidLine]]:
    """Lines given as {"soot_code", "subscriber_no", "additional_no"?} (the API, the confirm
    step); "number" keeps the line number staff saw, else the position counts from 1."""
    rows = []
    for i, line in enumerate(lines, start=1):
        soot_code = line.get("soot_code")
        fields = [
            "" if soot_code is None else str(soot_code),
            str(line.get("subscriber_no") or ""),
            str(line.get("additional_no") or ""),
        ]
        rows.append(RawRow(int(line.get("number") or i), fields, ";".join(fields).rstrip(";")))
    return check_rows(rows, index or InstitutionIndex.load(), header=False)
