"""A batch's results as CSV (Turkish text formats) or Excel (real numbers and dates)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from upstream.admin.tools import csv_response
from upstream.lists.exports import DATE_FORMAT, DATETIME_FORMAT, MONEY_FORMAT, xlsx_response

from .models import BillQueryBatch, BillQueryLine


def header() -> list[str]:
    return [
        _("Line"),
        _("Institution code"),
        _("Institution"),
        _("Subscriber no"),
        _("Additional no"),
        _("Outcome"),
        _("Result code"),
        _("Result message"),
        _("Customer name"),
        _("Invoice no"),
        _("Due date"),
        _("Invoice amount"),
        _("Service fee"),
        _("Total amount"),
        _("Invoice query id"),
        _("Firm reference no"),
        _("Queried at"),
    ]


MONEY_COLUMNS = (11, 12, 13)
DATE_COLUMNS = (10,)


def rows(lines: QuerySet[BillQueryLine]) -> Iterator[list[Any]]:
    """One row per bill; a line without bills is one row with the bill columns empty."""
    lines = lines.select_related("institution").prefetch_related("debts").order_by("position")
    for line in lines.iterator(chunk_size=1000):
        head = [
            line.line_number,
            line.soot_code,
            line.institution.name,
            line.subscriber_no,
            line.additional_no,
            line.get_outcome_display() if line.outcome else _("Pending"),
            line.result_code,
            line.result_message,
        ]
        tail = [line.firm_ref_no, timezone.localtime(line.queried_at) if line.queried_at else None]
        debts = list(line.debts.all())
        if not debts:
            yield [*head, None, None, None, None, None, None, None, *tail]
        for d in debts:
            yield [
                *head,
                d.customer_name,
                d.invoice_no,
                d.exp_date,
                d.invoice_amount,
                d.merchant_profit,
                d.total_amount,
                d.invoice_query_id,
                *tail,
            ]


def turkish_number(value: Decimal) -> str:
    """1234.5 -> "1.234,50" whatever the page's language: the file is for Turkish Excel."""
    return f"{value:,.2f}".replace(",", "\0").replace(".", ",").replace("\0", ".")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return turkish_number(value)
    if hasattr(value, "hour"):
        return value.strftime("%d.%m.%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    return value


def _filename(batch: BillQueryBatch, ext: str) -> str:
    name = slugify(_("bill queries %(id)s") % {"id": batch.pk}, allow_unicode=True)
    return f"{name}-{timezone.localtime().strftime('%Y%m%d-%H%M')}.{ext}"


def batch_csv(batch: BillQueryBatch, lines: QuerySet[BillQueryLine]) -> StreamingHttpResponse:
    return csv_response(
        _filename(batch, "csv"), header(), ([_csv_cell(v) for v in row] for row in rows(lines))
    )


def batch_xlsx(batch: BillQueryBatch, lines: QuerySet[BillQueryLine]) -> HttpResponse:
    formats = {i: MONEY_FORMAT for i in MONEY_COLUMNS}
    formats.update({i: DATE_FORMAT for i in DATE_COLUMNS})
    formats[len(header()) - 1] = DATETIME_FORMAT
    return xlsx_response(
        _filename(batch, "xlsx"), _("Bill queries"), header(), rows(lines), formats
    )
