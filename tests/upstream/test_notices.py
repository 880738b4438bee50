"""A finished job is announced to its creator; any job's results download; the banner."""

from __future__ import annotations

import io

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from upstream.models import JobNotice
from upstream.pushes import bulk


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture(autouse=True)
def _queued(queued_tasks):
    """Jobs wait in the queue; each test runs them."""


def bulk_job(operator, n=3):
    ids = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:n]
    records = SubscriptionInvoice.objects.filter(pk__in=list(ids.values_list("pk", flat=True)))
    return subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=operator, reason="r"
    )


def test_the_creator_sees_a_notice_on_the_next_page_once_and_gets_an_email(
    mirror, operator, operator_client, django_capture_on_commit_callbacks
):
    operator.email = "op@example.com"
    operator.save()
    job = bulk_job(operator)
    target = job.items.model.objects.none()  # items are written by the worker: pick a record
    first = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").first()
    mirror.faults(
        {"kind": "reject", "match": {"invoice_no": first.invoice_no}, "message": "Kayıt kilitli"}
    )
    del target

    with django_capture_on_commit_callbacks(execute=True):
        bulk.run_job(job.pk)

    page = operator_client.get(reverse("admin:index")).content.decode()
    assert f"Job #{job.pk}" in page and "2 succeeded, 1 failed" in page
    assert f'/upstream/job/{job.pk}/change/#job-failures"' in page
    assert f"Job #{job.pk}" not in operator_client.get(reverse("admin:index")).content.decode()
    assert JobNotice.objects.get(job=job).seen_at is not None
    [message] = mail.outbox
    assert message.to == ["op@example.com"] and str(job.pk) in message.subject
    assert f"/upstream/job/{job.pk}/change/" in message.body


def test_a_notice_is_in_the_readers_language(
    mirror, operator, operator_client, django_capture_on_commit_callbacks, settings
):
    job = bulk_job(operator)
    with django_capture_on_commit_callbacks(execute=True):
        bulk.run_job(job.pk)

    operator_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "tr"  # the reader's own choice
    page = operator_client.get(reverse("admin:index")).content.decode()

    assert f"#{job.pk}" in page and "başarılı" in page


def test_polling_and_the_api_do_not_consume_the_notice(
    mirror, operator, operator_client, django_capture_on_commit_callbacks
):
    job = bulk_job(operator)
    with django_capture_on_commit_callbacks(execute=True):
        bulk.run_job(job.pk)

    operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk]))
    operator_client.get("/api/jobs/", HTTP_ACCEPT="application/json")

    assert JobNotice.objects.get(job=job).seen_at is None


def test_a_single_push_answered_in_its_request_is_not_announced(mirror, operator):
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).first()
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")
    assert not JobNotice.objects.exists() and mail.outbox == []


def test_a_jobs_results_download_as_csv_and_excel_in_turkish_formats(
    mirror, operator, operator_client
):
    job = bulk_job(operator)
    bulk.run_job(job.pk)
    item = job.items.order_by("position").first()

    csv = operator_client.get(
        reverse("admin:upstream_job_results", args=[job.pk, "csv"]), HTTP_ACCEPT_LANGUAGE="tr"
    )
    text = b"".join(csv.streaming_content).decode("utf-8-sig")
    lines = text.strip().splitlines()
    assert len(lines) == 1 + job.total
    assert item.target_repr in lines[1] and ";" in lines[1]
    finished = item.finished_at.astimezone().strftime("%d.%m.%Y")
    assert finished in text, "dates as dd.mm.yyyy"

    xlsx = operator_client.get(reverse("admin:upstream_job_results", args=[job.pk, "xlsx"]))
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.values)
    assert len(rows) == 1 + job.total and rows[1][0] == 1 and rows[1][1] == item.target_repr
    assert sheet.cell(row=2, column=10).number_format == "DD.MM.YYYY HH:MM"


def test_viewers_may_download_results_but_an_unknown_format_is_404(mirror, operator, viewer_client):
    job = bulk_job(operator)
    ok = viewer_client.get(reverse("admin:upstream_job_results", args=[job.pk, "csv"]))
    assert ok.status_code == 200
    bad = viewer_client.get(reverse("admin:upstream_job_results", args=[job.pk, "pdf"]))
    assert bad.status_code == 404


def test_every_page_shows_whether_each_upstream_is_the_sandbox_or_live(
    sandbox, operator_client, settings
):
    page = operator_client.get(reverse("admin:index")).content.decode()
    banner = page.split('id="env-banner"', 1)[1].split("</div>", 1)[0]
    assert banner.count('data-mode="sandbox"') == 3 and 'data-mode="live"' not in banner

    settings.PAYNET_BASE_URL = "https://api.paynet.com.tr"
    login = Client().get(reverse("admin:login")).content.decode()
    assert 'data-mode="live"' in login and "Paynet: LIVE" in login
    assert "WiseCP: SANDBOX" in login
