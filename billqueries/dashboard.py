"""Payofin's figure on the operations dashboard (registered in apps.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.console.charts import Series, legend, stacked_bars
from upstream.console.dashboard import Chart, days_window, short_day

from .models import BillQueryLine


def bill_lines_per_day(now: datetime) -> Chart:

    days = days_window(now)
    since = timezone.make_aware(datetime.combine(days[0], datetime.min.time()))
    rows = (
        BillQueryLine.objects.filter(queried_at__gte=since, queried_at__lte=now)
        .annotate(day=TruncDate("queried_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "outcome")
        .annotate(n=Count("id"))
    )
    outcomes = {
        BillQueryLine.Outcome.FOUND: _("Debt found"),
        BillQueryLine.Outcome.NO_DEBT: _("No debt"),
        BillQueryLine.Outcome.FAILED: _("Failed"),
    }
    counts: dict[str, dict[date, int]] = {k: defaultdict(int) for k in outcomes}
    for row in rows:
        if row["outcome"] in counts:
            counts[row["outcome"]][row["day"]] += row["n"]
    series = [Series(text, key, [counts[key][d] for d in days]) for key, text in outcomes.items()]
    title = _("Payofin lines per day")
    return Chart(
        title,
        stacked_bars([short_day(d) for d in days], series, title=title, label_every=2),
        legend(series),
        not any(any(s.values) for s in series),
        "bill-lines",
    )
