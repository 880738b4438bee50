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


@pytest.mark.django_db
def test_a_jobs_page_builds_its_item_serializer_once(api_operator, operator, monkeypatch):
    from upstream.api import serializers

    jobs(30, operator)
    built = []
    original = serializers.JobItemSerializer.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(serializers.JobItemSerializer, "__init__", counted)
    listed = api_operator.get("/api/jobs/", {"page_size": 30}).json()["results"]
    assert len(listed) == 30 and all(len(job["items"]) == 3 for job in listed)
    assert len(built) == 1  # not one per job


@pytest.mark.django_db
def test_a_jobs_page_costs_the_same_queries_at_any_page_size(api_operator, operator):
    api_operator.get("/api/jobs/")
    jobs(40, operator)
    small = queries(api_operator, "/api/jobs/?page_size=5")
    assert queries(api_operator, "/api/jobs/?page_size=40") == small
    assert queries(api_operator, "/api/jobs/?page_size=500") == small
    assert queries(api_operator, "/api/jobs/?cursor=&page_size=40") <= small


# Cursor pages (?cursor=): every row once, in the list's order, however deep -----------------------


def read_all(api, url: str, **params) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    links: list[str] = []
    answer = api.get(url, {"cursor": "", **params})
    while True:
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert "count" not in body
        rows += body["results"]
        if not body["next"]:
            return rows, links
        links.append(body["next"])
        answer = api.get(body["next"])


@pytest.mark.django_db
def test_cursor_pages_read_every_job_once_in_the_lists_order(api_operator, operator):
    jobs(23, operator)
    # Ties on created_at: the id breaks them (the cursor compares (created_at, id) in order).
    Job.objects.update(created_at=Job.objects.order_by("id").first().created_at)
    numbered = api_operator.get("/api/jobs/", {"page_size": 500}).json()["results"]
    rows, links = read_all(api_operator, "/api/jobs/", page_size=5)
    assert [job["id"] for job in rows] == [job["id"] for job in numbered]
    assert len(links) == 4 and all("cursor=" in link for link in links)


@pytest.mark.django_db
def test_a_cursor_goes_back_with_previous(api_operator, operator):
    jobs(23, operator)
    numbered = api_operator.get("/api/jobs/", {"page_size": 500}).json()["results"]
    rows, links = read_all(api_operator, "/api/jobs/", page_size=5)
    assert [job["id"] for job in rows] == [job["id"] for job in numbered]
    # `previous` of the last page is the page before it.
    last = api_operator.get(links[-1]).json()
    before = api_operator.get(last["previous"]).json()
    assert [j["id"] for j in before["results"]] == [j["id"] for j in numbered[15:20]]


@pytest.mark.django_db
def test_a_cursor_page_seeks_instead_of_skipping(api_operator, operator):
    jobs(12, operator)
    first = api_operator.get("/api/jobs/", {"cursor": "", "page_size": 5}).json()
    with CaptureQueriesContext(connection) as captured:
        third = api_operator.get(api_operator.get(first["next"]).json()["next"]).json()
    assert len(third["results"]) == 2
    listing = [q["sql"] for q in captured if 'FROM "upstream_job"' in q["sql"]]
    assert listing and all("OFFSET" not in sql or "OFFSET 0" in sql for sql in listing)
    assert any('"upstream_job"."created_at" <' in sql for sql in listing)


@pytest.mark.django_db
def test_page_numbers_still_work_next_to_cursors(api_operator, operator):
    jobs(7, operator)
    body = api_operator.get("/api/jobs/", {"page": 2, "page_size": 5}).json()
    assert body["count"] == 7 and len(body["results"]) == 2 and body["next"] is None
    assert api_operator.get("/api/jobs/", {"page": "x"}).status_code == 400


def test_the_schema_documents_the_cursor(api_operator):
    schema = api_operator.get("/api/schema/", {"format": "json"}).json()
    params = {p["name"] for p in schema["paths"]["/api/jobs/"]["get"]["parameters"]}
    assert {"page", "page_size", "cursor"} <= params


@pytest.mark.django_db
def test_a_jobs_first_items_are_read_per_job_not_numbered_over_every_item(api_operator, operator):
    job = Job.objects.create(kind="paynet.invoice_status", title="t", created_by=operator, total=60)
    JobItem.objects.bulk_create(
        JobItem(job=job, position=p, target_type="x", target_id=str(p), target_repr="r")
        for p in range(60, 0, -1)
    )
    jobs(2, operator)
    with CaptureQueriesContext(connection) as captured:
        listed = api_operator.get("/api/jobs/").json()["results"]
    mine = next(j for j in listed if j["id"] == job.pk)
    assert [i["position"] for i in mine["items"]] == list(range(1, 11))
    item_reads = [q["sql"] for q in captured if "upstream_jobitem" in q["sql"]]
    assert len(item_reads) == 1
    # 10 rows per job read from the (job, position) index, no window numbering every item.
    assert "ROW_NUMBER" not in item_reads[0].upper()
    if connection.vendor == "postgresql":
        assert "LATERAL" in item_reads[0]
    else:  # SQLite: a correlated subquery per job of the page, limited to 10
        assert "json_each" in item_reads[0] and "LIMIT 10" in item_reads[0]
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {item_reads[0]}")
            plan = " | ".join(row[-1] for row in cursor.fetchall())
        assert "CORRELATED LIST SUBQUERY" in plan and "SCAN upstream_jobitem" not in plan, plan


def test_the_schema_still_types_a_jobs_actions(api_operator):
    schema = api_operator.get("/api/schema/", {"format": "json"}).json()
    actions = schema["components"]["schemas"]["Job"]["properties"]["actions"]
    assert actions["type"] == "array"


@pytest.mark.django_db
def test_a_jobs_items_are_shown_as_drfs_own_serializer_shows_them(api_operator, operator):
    """The item rows are built without DRF's per-field loop (issue 20); they must stay what
    DRF's ModelSerializer made of them: the same keys in the same order, the same values."""
    from datetime import UTC, datetime

    from rest_framework import serializers as drf

    from upstream.api.serializers import JobItemSerializer
    from upstream.models import UpstreamCall

    job = Job.objects.create(kind="paynet.invoice_status", title="t", created_by=operator, total=3)
    call = UpstreamCall.objects.create(
        service="paynet",
        operation="x",
        method="POST",
        url="https://example.invalid/",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    JobItem.objects.bulk_create(
        [
            JobItem(job=job, position=1, target_type="x", target_id="1", target_repr="İlk"),
            JobItem(
                job=job,
                position=2,
                target_type="x",
                target_id="2",
                target_repr="r",
                state="done",
                outcome="rejected",
                in_doubt=True,
                message="Geçersiz istek.",
                upstream_code="-24",
                result={"code": 8, "nested": [1, "ş"]},
                call=call,
                attempts=2,
                finished_at=datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC),
            ),
        ]
    )

    class Generic(drf.ModelSerializer):
        class Meta:
            model = JobItem
            fields = JobItemSerializer.Meta.fields

    def generic(item: JobItem) -> dict:
        return dict(Generic(item).data)

    items = list(JobItem.objects.filter(job=job).order_by("position"))
    fast = JobItemSerializer(context={})
    for item in items:
        shown = fast.to_representation(item)
        assert shown == generic(item)
        assert list(shown) == list(generic(item))
    assert fast.to_representation(items[1])["finished_at"] == "2026-12-01T12:30:15.123456+03:00"

    listed = api_operator.get("/api/jobs/").json()["results"][0]["items"]
    assert listed == [generic(item) for item in items]
    assert api_operator.get(f"/api/jobs/{job.pk}/").json()["items"] == listed


@pytest.mark.django_db
def test_a_jobs_page_does_not_read_the_items_payloads(api_operator, operator):
    jobs(3, operator)
    with CaptureQueriesContext(connection) as captured:
        assert api_operator.get("/api/jobs/").status_code == 200
    item_reads = [q["sql"] for q in captured if "upstream_jobitem" in q["sql"]]
    assert len(item_reads) == 1
    assert "payload" not in item_reads[0] and "message_text" not in item_reads[0]
    assert "result" in item_reads[0]


def test_a_jobs_page_leaves_the_frozen_selection_and_params_unread(api_operator, operator):
    jobs(3, operator)
    Job.objects.filter(pk=Job.objects.order_by("pk").first().pk).update(
        selection=",".join(str(n) for n in range(50_000)), params={"ids": list(range(100))}
    )
    with CaptureQueriesContext(connection) as captured:
        body = api_operator.get("/api/jobs/").json()
    job_reads = [q["sql"] for q in captured if q["sql"].startswith('SELECT "upstream_job"."id"')]
    assert len(job_reads) == 1
    for column in ("selection", "params", "title_text", "title_folded", "idempotency_key"):
        assert f'"upstream_job"."{column}"' not in job_reads[0], column
    assert len(body["results"]) == 3 and all(job["title"] for job in body["results"])


@pytest.mark.django_db
def test_a_job_is_shown_as_drfs_own_serializer_shows_it(api_operator, operator, admin_user):
    """The job rows are built without DRF's per-field loop (issue 20); every kind of value must
    stay what DRF's ModelSerializer made of it: the same keys in order, the same values."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from rest_framework import serializers as drf
    from rest_framework.renderers import JSONRenderer

    from upstream.api.serializers import JobSerializer
    from upstream.models import JobAction

    moment = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    plain = Job.objects.create(kind="paynet.invoice_status", title="İade", total=0)
    full = Job.objects.create(
        kind="wisecp.invoice_item_update",
        title="Toplu güncelleme",
        state=Job.State.REJECTED,
        reason="Müşteri talebi",
        created_by=operator,
        decided_by=admin_user,
        decided_at=moment,
        rejection_reason="Tutar çok yüksek",
        approval_expires_at=moment + timedelta(hours=4),
        started_at=moment,
        finished_at=moment + timedelta(seconds=3),
        total=7,
        succeeded=3,
        failed=2,
        cancelled=1,
        skipped=1,
        inline=True,
        prepared=7,
        amount=Decimal("1234.50"),
    )
    waiting = Job.objects.create(
        kind="paynet.invoice_status",
        title="t",
        state=Job.State.AWAITING_APPROVAL,
        created_by=operator,
        total=2,
        amount=Decimal("0.10"),
        approval_expires_at=moment,
    )
    JobAction.objects.create(job=full, kind=JobAction.Kind.CANCEL, actor=operator, reason="r")
    JobItem.objects.create(job=full, position=1, target_type="x", target_id="1", target_repr="r")

    fast = JobSerializer(context={"items_limit": 10})
    for job in Job.objects.filter(pk__in=[plain.pk, full.pk, waiting.pk]):
        shown = fast.to_representation(job)
        generic = drf.ModelSerializer.to_representation(fast, job)
        # As rendered: a bool and an int, or a choice and its string, compare equal in Python.
        assert JSONRenderer().render(shown) == JSONRenderer().render(generic)
    listed = {job["id"]: job for job in api_operator.get("/api/jobs/").json()["results"]}
    assert listed[full.pk]["amount"] == "1234.50"
    assert listed[full.pk]["decided_by"] == admin_user.username
    assert listed[full.pk]["actions"][0]["actor"] == "operator"


@pytest.mark.django_db
def test_a_call_is_shown_as_drfs_own_serializer_shows_it_masked(api_operator, operator):
    """The call rows are built without DRF's per-field loop (issue 20): the same keys in order
    and the same values as DRF's ModelSerializer, the bodies and headers masked as before."""
    from datetime import UTC, datetime

    from rest_framework import serializers as drf
    from rest_framework.renderers import JSONRenderer

    from upstream.api.serializers import UpstreamCallSerializer
    from upstream.calls.redaction import redact_headers, redact_shown
    from upstream.calls.remask import masked_url
    from upstream.models import UpstreamCall

    job = Job.objects.create(kind="paynet.invoice_status", title="t", created_by=operator, total=1)
    item = JobItem.objects.create(job=job, position=1, target_type="x", target_id="1")
    moment = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    body = {"name_surname": "Ayşe Yılmaz", "end_user_gsm": "5321234567", "amount": 1250}
    calls = [
        UpstreamCall.objects.create(
            service="paynet",
            operation="invoice_list",
            method="POST",
            url="https://example.invalid/",
            request_headers={"Authorization": "Basic c2VjcmV0", "Accept": "application/json"},
            request=body,
            status_code=200,
            response={"data": [body], "note": "e-posta ayse@example.com"},
            upstream_code="0",
            upstream_message="Başarılı",
            outcome="ok",
            duration_ms=51,
            attempt=2,
            mutating=True,
            created_at=moment,
            actor=operator,
            job=job,
            job_item=item,
            target_type="subscriptions.subscription",
            target_id="7",
            target_repr="Ayşe",
        ),
        UpstreamCall.objects.create(
            service="wisecp",
            operation="GetInvoice",
            method="GET",
            # Stored before the query's key was masked on write (calls_remask masks such rows).
            url="https://example.invalid/x?email=ayse@example.com&page=2",
            request_headers=["ham", "e-posta ayse@example.com"],
            request=None,
            response="ham metin: TC 12345678901",
            outcome="failed",
            error="ReadTimeout",
            created_at=moment,
        ),
    ]

    fast = UpstreamCallSerializer(context={})
    for call in UpstreamCall.objects.filter(pk__in=[c.pk for c in calls]):
        generic = drf.ModelSerializer.to_representation(fast, call)
        generic["url"] = masked_url(generic["url"])
        headers = generic["request_headers"]
        generic["request_headers"] = (
            redact_headers(headers) if isinstance(headers, dict) else redact_shown(headers)
        )
        generic["request"] = redact_shown(generic["request"])
        generic["response"] = redact_shown(generic["response"])
        # As rendered: a bool and an int, or a choice and its string, compare equal in Python.
        assert JSONRenderer().render(fast.to_representation(call)) == JSONRenderer().render(generic)
    listed = api_operator.get("/api/upstream-calls/").json()["results"]
    assert "Ayşe Yılmaz" not in str(listed) and "5321234567" not in str(listed)
    assert "c2VjcmV0" not in str(listed) and "ayse@example.com" not in str(listed)
    assert "page=2" in str(listed)


def test_a_listed_item_reads_what_the_item_serializer_shows():
    """ListedItem (the jobs page's item rows) names the columns JobItemSerializer shows, by the
    attributes it reads them with: a field added to one and not the other fails here."""
    from upstream.api.serializers import JobItemSerializer
    from upstream.api.views import ListedItem

    attribute = {"id": "pk", "call": "call_id"}
    shown = {attribute.get(name, name) for name in JobItemSerializer.Meta.fields}
    assert set(ListedItem._fields) == shown | {"job_id"}
