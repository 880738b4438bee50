"""Paynet's figures on the operations dashboard (registered in apps.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from upstream.console.charts import Series, legend, stacked_bars
from upstream.console.dashboard import Chart, dashboard_total
from upstream.l10n.formats import money

from .models import InvoiceStatus, SubscriptionInvoice

RECORDS_BY_STATUS = "records_by_status"


def records_by_status_rows() -> list[list[Any]]:
    """Payment records per status and their ₺ total: a whole-table GROUP BY, so the sweep
    computes it (upstream.registry.register_total) and the page reads what it left."""
    rows = (
        SubscriptionInvoice.objects.order_by()
        .values("status")
        .annotate(n=Count("id"), total=Sum("amount"))
    )
    return [[r["status"], r["n"], str(r["total"] or Decimal("0"))] for r in rows]


def records_by_status(now: datetime) -> Chart:
    data, computed_at = dashboard_total(RECORDS_BY_STATUS)
    rows = [(status, n, Decimal(total)) for status, n, total in data]
    by_status = {status: (n, total) for status, n, total in rows}
    totals = [float(by_status.get(int(s), (0, 0))[1]) for s in InvoiceStatus]
    series = [Series(_("Total (₺)"), "amount", totals)]
    notes = [
        f"{s.label}: {formats.number_format(by_status.get(int(s), (0, 0))[0], force_grouping=True)}"
        f" · {money(by_status.get(int(s), (0, Decimal('0')))[1])}"
        for s in InvoiceStatus
    ]
    notes.append(
        _("As of %(time)s.") % {"time": formats.time_format(timezone.localtime(computed_at), "H:i")}
    )
    title = _("Payment records by status, ₺ total")
    return Chart(
        title,
        stacked_bars(
            [str(s.label) for s in InvoiceStatus],
            series,
            title=title,
            value_format=lambda v: money(Decimal(str(v))),
            height=220,
        ),
        legend(series),
        not rows,
        "records",
        notes,
    )
