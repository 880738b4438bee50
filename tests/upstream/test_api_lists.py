"""API lists cost the same queries however many rows a page holds (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from upstream.models import Job, JobItem


def jobs(n: int, operator) -> None:
    for _ in range(n):
        job = Job.objects.create(
            kind="paynet.invoice_status", title="t", created_by=operator, total=3
        )
        JobItem.objects.bulk_create(
            JobItem(job=job, position=p, target_type="x", target_id=str(p), target_repr="r")
            for p in range(1, 4)
        )


def queries(api, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        answer = api.get(url)
    assert answer.status_code == 200, answer.content
    return len(captured)


@pytest.mark.django_db
def test_the_jobs_list_reads_every_jobs_first_items_in_one_query(api_operator, operator):
    api_operator.get("/api/jobs/")  # the user's permissions, read once
    jobs(2, operator)
    two = queries(api_operator, "/api/jobs/")
    jobs(5, operator)
    assert queries(api_operator, "/api/jobs/") == two  # a short page: the same, whatever it holds
    jobs(60, operator)
    full_page = queries(api_operator, "/api/jobs/")
    jobs(60, operator)
    assert queries(api_operator, "/api/jobs/") == full_page

    listed = api_operator.get("/api/jobs/").json()["results"]
    assert all(len(job["items"]) == 3 for job in listed)
    assert [i["position"] for i in listed[0]["items"]] == [1, 2, 3]
    assert listed[0]["created_by"] == "operator"


@pytest.mark.django_db
def test_a_jobs_page_shows_at_most_ten_items_per_job(api_operator, operator):
    job = Job.objects.create(kind="paynet.invoice_status", title="t", created_by=operator, total=60)
    JobItem.objects.bulk_create(
        JobItem(job=job, position=p, target_type="x", target_id=str(p), target_repr="r")
        for p in range(1, 61)
    )
    listed = api_operator.get("/api/jobs/").json()["results"]
    assert len(listed[0]["items"]) == 10
    assert len(api_operator.get(f"/api/jobs/{job.pk}/").json()["items"]) == 60
