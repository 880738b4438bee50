"""The admin index's summary of jobs and problem calls."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from upstream.models import Job, UpstreamCall


def call(outcome: str, operation: str = "invoice_status_update") -> UpstreamCall:
    return UpstreamCall.objects.create(
        service="paynet",
        operation=operation,
        method="POST",
        url="http://x/v1/subscription/" + operation,
        outcome=outcome,
        created_at=timezone.now(),
    )


def test_index_shows_latest_jobs_and_links_to_the_calls_that_need_a_look(operator_client):
    job = Job.objects.create(kind="paynet.invoice_status", title="Set 3 records", total=3, failed=1)
    for outcome in ("ok", "failed", "rejected", "in_doubt"):
        call(outcome)

    page = operator_client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse("admin:upstream_job_change", args=[job.pk])}"' in page
    assert "Set 3 records" in page
    assert "3 upstream calls failed, were refused or are in doubt" in page
    listed = operator_client.get(
        reverse("admin:upstream_upstreamcall_changelist"),
        {"outcome__in": "failed,rejected,in_doubt"},
    )
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 3


def test_index_without_job_permissions_shows_no_summary(django_user_model, client):
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard"' not in page
