"""No English words or raw codes on Turkish pages: job kinds, group names, record types, the
sidebar's models, the dashboard's headings."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from upstream.models import Job, UpstreamCall

pytestmark = pytest.mark.django_db


def test_refresh_jobs_are_named_by_their_label_in_lists_and_filters(admin_client):
    admin_client.cookies["django_language"] = "tr"
    Job.objects.create(kind="paynet.refresh", title="t", total=1)
    Job.objects.create(kind="wisecp.refresh", title="t", total=1)
    page = admin_client.get(reverse("admin:upstream_job_changelist")).content.decode()
    assert "paynet.refresh" not in page.replace("kind=paynet.refresh", "")
    assert "Paynet: abonelikleri yenileme" in page and "WiseCP: faturaları yenileme" in page


def test_the_403_page_names_the_group_in_turkish(viewer_client):
    viewer_client.cookies["django_language"] = "tr"
    page = viewer_client.get(reverse("admin:billqueries_billquerybatch_add")).content.decode()
    assert "Finans operatörleri" in page and "Finance operators" not in page


def test_a_calls_page_names_the_record_type_and_the_sidebar_is_turkish(admin_client):
    admin_client.cookies["django_language"] = "tr"
    call = UpstreamCall.objects.create(
        service="paynet",
        operation="invoice_status_update",
        method="POST",
        url="http://x",
        target_type="subscriptions.subscriptioninvoice",
        target_id="1",
        target_repr="11400001",
        outcome="ok",
        created_at=timezone.now(),
    )
    page = admin_client.get(reverse("admin:upstream_upstreamcall_change", args=[call.pk]))
    text = page.content.decode()
    assert "subscriptions.subscriptioninvoice" not in text and "Ödeme kaydı" in text
    assert "Access failures" not in text and "Erişim hataları" in text


def test_the_dashboard_heads_open_drift_in_turkish(admin_client):
    admin_client.cookies["django_language"] = "tr"
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Upstream başına" not in page


def test_call_and_job_numbers_are_never_grouped_like_amounts(admin_client):
    admin_client.cookies["django_language"] = "tr"
    job = Job.objects.create(pk=1041, kind="paynet.invoice_status", title="t", total=1)
    call = UpstreamCall.objects.create(
        pk=2041,
        service="paynet",
        operation="invoice_status_update",
        method="POST",
        url="http://x",
        outcome="in_doubt",
        created_at=timezone.now(),
    )
    job.items.create(
        position=1, target_type="x", target_id="1", target_repr="r", in_doubt=True, call=call
    )
    page = admin_client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert "#1041" in page and "#2041" in page
    assert "#1.041" not in page and "#2.041" not in page
