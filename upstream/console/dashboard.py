"""The operations dashboard's figures: a few aggregates over indexed time windows.

Every query is bounded by an indexed column (created_at, queried_at, status) or cached briefly,
so the page stays fast with millions of rows behind it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Q, QuerySet
from django.db.models.functions import TruncDate, TruncHour
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from upstream.console.charts import Series, legend, stacked_bars
from upstream.models import DashboardFigure, Job, JobItem, Outcome, Service, UpstreamCall
from upstream.pushes.approvals import awaiting_for
from upstream.registry import charts as registered_charts
from upstream.registry import mirrored_models, totals

DAYS = 14
HOURS = 24


@dataclass
class Chart:
    title: str
    svg: Any
    legend: Any
    empty: bool
    key: str
    notes: list[str] = field(default_factory=list)


def days_window(now: datetime) -> list[date]:
    """The dashboard's days, oldest first, ending today."""
    today = timezone.localdate(now)
    return [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]


def short_day(day: date) -> str:
    return formats.date_format(day, "d.m")


def jobs_per_day(now: datetime) -> Chart:
    days = days_window(now)
    since = timezone.make_aware(datetime.combine(days[0], datetime.min.time()))
    rows = (
        Job.objects.filter(created_at__gte=since, created_at__lte=now)
        .exclude(kind__endswith=".sync")  # the periodic syncs have their mirror cards
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "state")
        .annotate(n=Count("id"))
    )
    groups = {
        "succeeded": (_("Succeeded"), {Job.State.SUCCEEDED}),
        "partial": (_("Partially failed"), {Job.State.PARTIALLY_FAILED}),
        "failed": (_("Failed"), {Job.State.FAILED}),
        "stopped": (
            _("Cancelled, rejected or expired"),
            {Job.State.CANCELLED, Job.State.REJECTED, Job.State.EXPIRED},
        ),
        "open": (_("Not finished"), set(Job.ACTIVE_STATES) | {Job.State.AWAITING_APPROVAL}),
    }
    counts: dict[str, dict[date, int]] = {key: defaultdict(int) for key in groups}
    for row in rows:
        for key, (_label, states) in groups.items():
            if row["state"] in states:
                counts[key][row["day"]] += row["n"]
    series = [
        Series(label, key, [counts[key][d] for d in days]) for key, (label, _s) in groups.items()
    ]
    title = _("Jobs per day by outcome")
    return Chart(
        title,
        stacked_bars([short_day(d) for d in days], series, title=title, label_every=2),
        legend(series),
        not any(any(s.values) for s in series),
        "jobs",
    )


def _percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)])


class _P95(Aggregate):
    """PostgreSQL's ordered-set percentile (the continuous one, as dashboards usually show)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.95) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _p95_per_hour(window: QuerySet[UpstreamCall]) -> dict[datetime, float | None]:
    """The 95th percentile duration per hour: in SQL on PostgreSQL, else from the durations."""
    hourly = window.annotate(hour=TruncHour("created_at"))
    if connection.vendor == "postgresql":
        rows = hourly.values("hour").annotate(p95=_P95("duration_ms"))
        return {row["hour"]: round(row["p95"]) for row in rows}
    durations: dict[datetime, list[int]] = defaultdict(list)
    for hour, ms in hourly.values_list("hour", "duration_ms"):
        durations[hour].append(ms)
    return {hour: _percentile(values, 0.95) for hour, values in durations.items()}


def calls_per_hour(now: datetime, service: str, label: str) -> Chart:
    start = (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(HOURS)]
    # Every outcome named, so the (service, outcome, created_at, duration_ms) index is read as
    # one short range per outcome, without touching the table, however long the log is.
    window = UpstreamCall.objects.filter(
        service=service,
        outcome__in=list(Outcome.values),
        created_at__gte=start,
        created_at__lt=start + timedelta(hours=HOURS),
    )
    rows = (
        window.annotate(hour=TruncHour("created_at"))
        .values("hour", "outcome")
        .annotate(n=Count("id"))
    )
    outcomes = {
        "ok": _("OK"),
        "rejected": _("Refused"),
        "failed": _("Failed"),
        "in_doubt": _("In doubt"),
    }
    counts: dict[str, dict[datetime, int]] = {k: defaultdict(int) for k in outcomes}
    for row in rows:
        key = row["outcome"] if row["outcome"] in outcomes else "in_doubt"
        counts[key][row["hour"]] += row["n"]
    p95_by_hour = _p95_per_hour(window)
    series = [Series(text, key, [counts[key][h] for h in hours]) for key, text in outcomes.items()]
    p95 = [p95_by_hour.get(h) for h in hours]
    title = _("%(service)s calls per hour, last 24 hours") % {"service": label}
    line_label = _("p95 latency (ms)")
    return Chart(
        title,
        stacked_bars(
            [timezone.localtime(h).strftime("%H") for h in hours],
            series,
            title=title,
            line=p95,
            line_label=line_label,
            line_format=lambda v: f"{v:g} ms",
            label_every=3,
        ),
        legend(series, line_label),
        not any(any(s.values) for s in series),
        f"calls-{service}",
    )


def refresh_totals(*, max_age: float | None = None) -> int:
    """Recompute the totals older than max_age seconds (all when None); returns how many.

    The sweep calls this every DASHBOARD_TOTALS_SECONDS, so no page view ever runs a GROUP BY
    over a whole table.
    """
    now = timezone.now()
    fresh = set()
    if max_age is not None:
        fresh = set(
            DashboardFigure.objects.filter(
                key__in=totals(), computed_at__gt=now - timedelta(seconds=max_age)
            ).values_list("key", flat=True)
        )
    refreshed = 0
    for key, compute in totals().items():
        if key in fresh:
            continue
        DashboardFigure.objects.update_or_create(
            key=key, defaults={"data": compute(), "computed_at": timezone.now()}
        )
        refreshed += 1
    return refreshed


def dashboard_total(key: str) -> tuple[Any, datetime]:
    """A total as the sweep left it; computed here only when missing or long stale (no worker)."""
    figure = DashboardFigure.objects.filter(key=key).first()
    stale_after = timedelta(seconds=10 * settings.DASHBOARD_TOTALS_SECONDS)
    if figure is None or figure.computed_at < timezone.now() - stale_after:
        figure, _created = DashboardFigure.objects.update_or_create(
            key=key, defaults={"data": totals()[key](), "computed_at": timezone.now()}
        )
    return figure.data, figure.computed_at


def my_counts(user: Any) -> list[dict[str, Any]]:
    """The dashboard's three figures, each a link to the filtered list behind it."""
    jobs = reverse("admin:upstream_job_changelist")
    items = reverse("admin:upstream_jobitem_changelist")
    mine_failed = Job.objects.filter(
        created_by_id=user.pk,
        state__in=[Job.State.FAILED, Job.State.PARTIALLY_FAILED],
        created_at__gte=timezone.now() - timedelta(days=DAYS),
    ).count()
    in_doubt = JobItem.objects.filter(
        Q(outcome=JobItem.Outcome.IN_DOUBT) | Q(in_doubt=True, state=JobItem.State.PENDING)
    ).count()
    return [
        {
            "key": "approval",
            "label": _("Waiting for my approval"),
            "count": awaiting_for(user).count(),
            "url": f"{jobs}?approval=mine",
        },
        {
            "key": "my-failed",
            "label": _("My failed jobs (14 days)"),
            "count": mine_failed,
            "url": f"{jobs}?created_by__id__exact={user.pk}&state__in=failed,partially_failed",
        },
        {
            "key": "in-doubt",
            "label": _("Items in doubt"),
            "count": in_doubt,
            "url": f"{items}?outcome__exact=in_doubt",
        },
    ]


def _drift_services() -> list[tuple[str, str]]:
    """The upstreams whose records can drift (what the verticals registered)."""
    tracked = {m.service for m in mirrored_models() if m.drift_tracked}
    return [(value, label) for value, label in Service.choices if value in tracked]


def open_drift_chart(per_service: dict[str, dict[str, int]]) -> Chart:
    """Open drift per upstream, stacked by kind (upstream/history/drift.py)."""
    from upstream.models import Drift

    services = _drift_services()
    series = [
        Series(str(label), kind, [per_service.get(v, {}).get(kind, 0) for v, _l in services])
        for kind, label in Drift.Kind.choices
    ]
    title = _("Open drift per upstream")
    return Chart(
        title,
        stacked_bars([str(label) for _v, label in services], series, title=title, height=180),
        legend(series),
        not any(any(s.values) for s in series),
        "drift",
    )


def drift_dashboard_counts(per_service: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Open drift per upstream, each a link to the filtered report."""
    report = reverse("admin:upstream_drift_changelist")
    return [
        {
            "key": f"drift-{value}",
            "label": _("Open drift: %(upstream)s") % {"upstream": label},
            "count": sum(per_service.get(value, {}).values()),
            "url": f"{report}?state__exact=open&service__exact={value}",
        }
        for value, label in _drift_services()
    ]


def health_cards() -> list[dict[str, Any]]:
    """Each upstream's health (upstream/calls/health.py), formatted for the dashboard's cards."""
    from upstream.calls.health import upstream_health

    labels = {
        "closed": _("Breaker closed"),
        "open": _("Breaker open"),
        "half_open": _("Breaker half open: probing"),
    }
    cards = []
    for h in upstream_health():
        cards.append(
            {
                "service": h.service,
                "label": h.label,
                "mode": h.mode,
                "breaker": h.breaker,
                "breaker_label": labels.get(h.breaker, h.breaker),
                "last_success_at": h.last_success_at,
                "error_rate_text": "—"
                if h.error_rate is None
                else _("%(rate)s%%") % {"rate": formats.number_format(h.error_rate * 100, 1)},
                "p95_text": "—" if h.p95_ms is None else f"{formats.number_format(h.p95_ms)} ms",
                "in_doubt": h.in_doubt,
            }
        )
    return cards


def mirror_cards(now: datetime | None = None) -> list[dict[str, Any]]:
    """Per upstream, how old the mirror is ("as of 09:41, synced in 38 s", in the reader's
    language and time zone), a sync running now, and a warning when the last good sync is late
    (older than twice SYNC_INTERVAL_SECONDS) or the last sync failed."""
    from django.utils.timesince import timesince

    from upstream.history.sync_job import mirror_age
    from upstream.registry import upstreams

    now = now or timezone.now()
    cards = []
    for service, label in Service.choices:
        if service not in upstreams():
            continue
        age = mirror_age(service, now)
        as_of = age.as_of
        as_of_text = ""
        if as_of is not None:
            local = timezone.localtime(as_of)
            same_day = local.date() == timezone.localdate(now)
            as_of_text = formats.date_format(local, "H:i" if same_day else "SHORT_DATETIME_FORMAT")
        warnings = []
        if age.failed and age.last is not None:
            warnings.append(
                (
                    "failed",
                    _("The last sync failed for %(count)s record(s).")
                    % {"count": formats.number_format(age.last.failed)},
                )
            )
        if age.late:
            warnings.append(
                (
                    "late",
                    _("Late: no complete sync for %(age)s (expected every %(interval)s).")
                    % {
                        "age": timesince(as_of, now) if as_of else _("ever"),
                        "interval": _duration(settings.SYNC_INTERVAL_SECONDS),
                    },
                )
            )
        running = age.running
        cards.append(
            {
                "service": service,
                "label": label,
                "as_of": as_of,
                "as_of_text": as_of_text,
                "took_text": _duration(age.took.total_seconds()) if age.took else "",
                "last": age.last,
                "running": running,
                "running_percent": running.percent if running else None,
                "warnings": warnings,
            }
        )
    return cards


def _duration(seconds: float) -> str:
    if seconds < 120:
        return _("%(n)s s") % {"n": formats.number_format(round(seconds))}
    if seconds < 7200:
        return _("%(n)s min") % {"n": formats.number_format(round(seconds / 60))}
    return _("%(n)s h") % {"n": formats.number_format(round(seconds / 3600, 1), 1)}


def worker_card() -> dict[str, Any] | None:
    """The task workers: when each was last seen, and a warning when none has been seen for
    WORKER_STALE_SECONDS (urgent while jobs wait: nothing runs them)."""
    from django.utils.timesince import timesince

    from upstream.liveness.heartbeat import worker_status

    status = worker_status()
    if status.backend not in ("database", "rq"):
        return None  # tasks run in the request (immediate) or never (dummy): no worker to see
    now = timezone.now()
    warning = ""
    if status.unreadable:
        warning = _("The task workers' registry cannot be read (is Redis running?).")
    elif status.warning and status.last_seen_at is None:
        warning = _("No task worker has been seen.")
    elif status.warning:
        warning = _("No task worker has been seen for %(age)s.") % {
            "age": timesince(status.last_seen_at, now)
        }
    if warning and status.jobs_waiting and not status.unreadable:
        warning += " " + _(
            "%(count)s job(s) are waiting and will not run until a worker is started."
        ) % {"count": formats.number_format(status.jobs_waiting)}
    return {
        "workers": [
            {
                "name": f"{w.hostname} #{w.pid}" if w.pid else w.name,
                "state": w.state,
                "state_label": w.state_label,
                "task": w.task,
                "seen_at": w.seen_at,
                "seen_ago": timesince(w.seen_at, now) if w.seen_at else "",
                "alive": w.alive,
                "reconnects": w.reconnects,
            }
            for w in status.workers[:8]
        ],
        "alive": status.alive,
        "warning": warning,
        "urgent": bool(warning) and status.jobs_waiting > 0,
        "jobs_waiting": status.jobs_waiting,
    }


def dashboard(user: Any) -> dict[str, Any]:
    now = timezone.now()
    charts = []
    if user.has_perm("upstream.view_job"):
        charts.append(jobs_per_day(now))
    if user.has_perm("upstream.view_upstreamcall"):
        charts += [calls_per_hour(now, value, label) for value, label in Service.choices]
    # The verticals' own charts (upstream.registry), in the order their apps are installed.
    charts += [chart.draw(now) for chart in registered_charts() if user.has_perm(chart.permission)]
    counts = my_counts(user) if user.has_perm("upstream.view_job") else []
    if user.has_perm("upstream.view_drift"):
        from upstream.history.drift import drift_counts

        per_service = drift_counts()
        counts += drift_dashboard_counts(per_service)
        charts.append(open_drift_chart(per_service))
    return {
        "charts": charts,
        "counts": counts,
        "health": health_cards() if user.has_perm("upstream.view_upstreamcall") else [],
        "workers": worker_card() if user.has_perm("upstream.view_job") else None,
        "mirror": mirror_cards(now) if user.has_perm("upstream.view_job") else [],
    }
