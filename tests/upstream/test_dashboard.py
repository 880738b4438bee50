"""The operations dashboard: counts for the reader, charts drawn in the page, bounded queries."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import paynet_sync
from upstream.console.charts import Series, stacked_bars
from upstream.models import DashboardFigure, Job, JobItem, UpstreamCall
from upstream.pushes import bulk, runner


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture(autouse=True)
def _queued(queued_tasks):
    """Jobs wait in the queue; each test runs them."""


def bars(page: str, chart: str) -> list[tuple[str, float]]:
    block = page.split(f'id="chart-{chart}"', 1)[1].split("</svg>", 1)[0]
    return [
        (series, float(value))
        for series, value in re.findall(r'data-series="([^"]+)" data-value="([^"]+)"', block)
    ]


def test_the_index_draws_the_charts_from_the_data(mirror, operator, admin_client):
    ids = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:3]
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk__in=list(ids.values_list("pk", flat=True))),
        status=S.CANCEL,
        actor=operator,
        reason="r",
    )
    bulk.run_job(job.pk)

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert bars(page, "jobs") == [("succeeded", 1.0)]
    paynet = bars(page, "calls-paynet")
    ok_calls = UpstreamCall.objects.filter(service="paynet", outcome="ok").count()
    assert sum(v for s, v in paynet if s == "ok") == ok_calls
    assert (
        'id="chart-calls-paynet"' in page
        and "<polyline" in page.split('id="chart-calls-paynet"')[1]
    )
    records = dict(bars(page, "records"))
    assert records  # ₺ totals per status
    total_cancelled = sum(
        SubscriptionInvoice.objects.filter(status=S.CANCEL).values_list("amount", flat=True),
        Decimal("0"),
    )
    assert 'id="chart-records"' in page and str(job.pk)
    assert total_cancelled >= 0
    assert 'id="chart-bill-lines"' in page


def test_the_counts_link_to_their_filtered_lists(mirror, operator, operator_client):
    job = Job.objects.create(
        kind="paynet.invoice_status",
        title="t",
        created_by=operator,
        state=Job.State.FAILED,
        total=1,
    )
    JobItem.objects.create(
        job=job,
        position=1,
        target_type="x",
        target_id="1",
        target_repr="r",
        state="done",
        outcome="in_doubt",
    )

    page = operator_client.get(reverse("admin:index")).content.decode()

    failed = re.search(r'id="count-my-failed" href="([^"]+)"><span class="dash-number">(\d+)', page)
    assert failed and failed.group(2) == "1"
    listed = operator_client.get(failed.group(1).replace("&amp;", "&"))
    assert [j.pk for j in listed.context["cl"].result_list] == [job.pk]
    doubt = re.search(r'id="count-in-doubt" href="([^"]+)"><span class="dash-number">(\d+)', page)
    assert doubt and doubt.group(2) == "1"


def test_the_dashboard_costs_the_same_queries_with_more_rows(mirror, admin_client):
    now = timezone.now()
    UpstreamCall.objects.bulk_create(  # every upstream has calls in the health window already
        UpstreamCall(
            service=s,
            operation="x",
            method="GET",
            url="u",
            outcome="ok",
            duration_ms=5,
            created_at=now,
        )
        for s in ("paynet", "wisecp", "payofin")
    )
    admin_client.get(reverse("admin:index"))
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse("admin:index"))
    now = timezone.now()
    UpstreamCall.objects.bulk_create(
        UpstreamCall(
            service="wisecp",
            operation="x",
            method="GET",
            url="u",
            outcome="ok",
            duration_ms=i,
            created_at=now - timedelta(minutes=i),
        )
        for i in range(300)
    )
    with CaptureQueriesContext(connection) as many:
        admin_client.get(reverse("admin:index"))
    assert len(many) == len(few)
    assert not [
        q["sql"]
        for q in many.captured_queries
        if "COUNT(*)" in q["sql"] and "WHERE" not in q["sql"]
    ]


def test_stacked_bars_scale_and_escape():
    svg = str(stacked_bars(["<a>"], [Series("x<y", "ok", [4])], title="t"))
    assert "<a>" not in svg and "&lt;a&gt;" in svg and "x&lt;y" in svg
    assert 'data-value="4"' in svg


def test_the_dashboard_shows_each_upstreams_health_and_an_open_breaker(mirror, admin_client):
    from upstream.calls.breaker import breaker_trip

    breaker_trip("paynet")

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert 'id="health-paynet" data-breaker="open"' in page
    assert 'id="health-wisecp" data-breaker="closed"' in page
    assert page.count('class="health-card') == 3


def _records_chart(page: str) -> dict[str, float]:
    return dict(bars(page, "records"))


def test_records_by_status_come_from_the_swept_totals(mirror, admin_client, settings):
    """The page never runs the whole-table GROUP BY: the sweep computes it, the page reads it."""
    settings.DASHBOARD_TOTALS_SECONDS = 60
    assert runner.sweep()["dashboard_totals"] == 1
    waiting = SubscriptionInvoice.objects.filter(status=S.WAITING)
    before = sum(waiting.values_list("amount", flat=True), Decimal("0"))

    with CaptureQueriesContext(connection) as page_queries:
        page = admin_client.get(reverse("admin:index")).content.decode()
    assert [float(v) for s, v in bars(page, "records")] and before > 0
    assert not [q for q in page_queries.captured_queries if "subscriptioninvoice" in q["sql"]]
    assert "As of" in page or "itibarıyla" in page

    # A change after the sweep shows only after the next refresh of a stale total.
    first = waiting.order_by("pk").first()
    SubscriptionInvoice.objects.filter(pk=first.pk).update(amount=first.amount + 1000)
    stale_page = admin_client.get(reverse("admin:index")).content.decode()
    assert bars(stale_page, "records") == bars(page, "records")
    assert runner.sweep()["dashboard_totals"] == 0  # still fresh: nothing recomputed

    DashboardFigure.objects.update(computed_at=timezone.now() - timedelta(seconds=61))
    assert runner.sweep()["dashboard_totals"] == 1
    fresh = admin_client.get(reverse("admin:index")).content.decode()
    old_total = sum(v for _s, v in bars(page, "records"))
    new_total = sum(v for _s, v in bars(fresh, "records"))
    assert new_total == pytest.approx(old_total + 1000)


def test_without_a_worker_the_page_computes_a_missing_or_long_stale_total(
    mirror, admin_client, settings
):
    settings.DASHBOARD_TOTALS_SECONDS = 60
    assert not DashboardFigure.objects.exists()
    page = admin_client.get(reverse("admin:index")).content.decode()
    expected = float(sum(SubscriptionInvoice.objects.values_list("amount", flat=True)))
    assert sum(v for _s, v in bars(page, "records")) == pytest.approx(expected)
    assert DashboardFigure.objects.get().key == "records_by_status"

    SubscriptionInvoice.objects.filter(pk=SubscriptionInvoice.objects.first().pk).delete()
    DashboardFigure.objects.update(computed_at=timezone.now() - timedelta(seconds=601))
    page = admin_client.get(reverse("admin:index")).content.decode()
    expected = float(sum(SubscriptionInvoice.objects.values_list("amount", flat=True)))
    assert sum(v for _s, v in bars(page, "records")) == pytest.approx(expected)


def test_recent_actions_list_the_readers_own_jobs(operator, operator_client):
    for n in range(3):
        Job.objects.create(
            kind="paynet.invoice_status", title=f"Push {n}", created_by=operator, total=1
        )
    page = operator_client.get(reverse("admin:index")).content.decode()
    mine = page.split('id="my-actions"')[1].split("</ul>")[0]
    assert all(f"Push {n}" in mine for n in range(3))
    assert page.count('id="recent-actions-module"') == 1
