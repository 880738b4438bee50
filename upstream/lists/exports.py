"""Spreadsheets staff download: Excel files with real numbers and dates, and a job's results."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from upstream.admin.tools import attachment_disposition, csv_response
from upstream.lists.cells import inert
from upstream.models import Job
from upstream.pushes.kinds import kind_for

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MONEY_FORMAT = "#,##0.00"
DATE_FORMAT = "DD.MM.YYYY"
DATETIME_FORMAT = "DD.MM.YYYY HH:MM"


def xlsx_response(
    filename: str,
    sheet_title: str,
    header: list[str],
    rows: Iterable[list[Any]],
    formats: dict[int, str] | None = None,
) -> HttpResponse:
    """An Excel file (write-only, so memory stays flat): a bold, frozen header row; `formats`
    maps a column index to its number format; date-times are written in local time. A text
    that would start a formula is written inert, as text (upstream.lists.cells): openpyxl
    stores any string starting with "=" as a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    formats = formats or {}
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_title[:31])
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    head = []
    for title in header:
        cell = WriteOnlyCell(sheet, value=inert(title))
        cell.font = bold
        head.append(cell)
    sheet.append(head)
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if isinstance(value, datetime):
                # Excel has no time zones: local time.
                value = timezone.localtime(value).replace(tzinfo=None) if value.tzinfo else value
            value = inert(value)
            cell = WriteOnlyCell(sheet, value=value)
            if value is not None and i in formats:
                cell.number_format = formats[i]
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    response = HttpResponse(buffer.getvalue(), content_type=XLSX_TYPE)
    response["Content-Disposition"] = attachment_disposition(filename)
    return response


def job_results_header() -> list[str]:
    return [
        _("Position"),
        _("Record"),
        _("Record id"),
        _("State"),
        _("Outcome"),
        _("What changed"),
        _("Message"),
        _("Upstream code"),
        _("Attempts"),
        _("Finished at"),
        _("Call"),
    ]


def job_results_rows(job: Job) -> Iterator[list[Any]]:
    try:
        handler = kind_for(job.kind)
    except LookupError:
        handler = None
    items = job.items.order_by("position").defer("payload")
    for item in items.iterator(chunk_size=2000):
        yield [
            item.position,
            item.target_repr,
            item.target_id,
            item.get_state_display(),
            item.get_outcome_display() if item.outcome else "",
            handler.describe(item.result) if handler and item.result else "",
            item.display_message,
            item.upstream_code,
            item.attempts,
            item.finished_at,
            item.call_id,
        ]


def _filename(job: Job, ext: str) -> str:
    # A file name staff read: in their language, every letter kept (attachment_disposition).
    name = slugify(_("results of job %(id)s") % {"id": job.pk}, allow_unicode=True)
    return f"{name}-{timezone.localtime().strftime('%Y%m%d-%H%M')}.{ext}"


def job_results_csv(job: Job) -> StreamingHttpResponse:
    return csv_response(_filename(job, "csv"), job_results_header(), job_results_rows(job))


def job_results_xlsx(job: Job) -> HttpResponse:
    return xlsx_response(
        _filename(job, "xlsx"),
        _("Job %(id)s") % {"id": job.pk},
        job_results_header(),
        job_results_rows(job),
        {9: DATETIME_FORMAT},
    )
