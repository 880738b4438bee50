"""Idempotent everywhere (issue 17, point 7): one request, one launch.

Bulk API writes honour `Idempotency-Key` (a replay answers the same job, even when the first
request died or failed in our code after launching it); a key whose request failed in our code
answers that outcome, never a silent second send; every admin form that starts work carries a
one-time token, so the same form posted twice (one after the other, or at once on PostgreSQL)
starts one job and the second copy goes to the first one's page.

Jobs are queued and never run here (`queued_tasks`): the records stay as they were, so a second
launch would find them to change and start a second job.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from html.parser import HTMLParser
from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.db import close_old_connections, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import InvoiceItem
from billing.sync import wisecp_sync
from billqueries.models import BillQueryBatch
from billqueries.sync import payofin_sync
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import subscription_refresh
from tests.conftest import require_postgres
from tests.subscriptions.conftest import mirror  # noqa: F401
from upstream.models import Drift, IdempotencyRecord, Job, JobItem
from upstream.pushes.bulk import prepare_job

pytestmark = pytest.mark.django_db

INVOICES = reverse("admin:subscriptions_subscriptioninvoice_changelist")
SUBSCRIPTIONS = reverse("admin:subscriptions_subscription_changelist")
ITEMS = reverse("admin:billing_invoiceitem_changelist")
WISECP_INVOICES = reverse("admin:billing_invoice_changelist")
DRIFTS = reverse("admin:upstream_drift_changelist")
BATCH_ADD = reverse("admin:billqueries_billquerybatch_add")


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """Launched jobs wait in the queue: nothing they would send changes what a repeat finds."""


def waiting_ids(n: int) -> list[int]:
    return list(
        SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").values_list("pk")[:n]
    )


def ids_of(rows) -> list[int]:
    return [pk for (pk,) in rows]


def job_page(job_id: int) -> str:
    return reverse("admin:upstream_job_change", args=[job_id])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def drift_entries(sandbox, n: int) -> list[int]:
    """n open drift entries: payment records cancelled at Paynet behind our back."""
    for record in SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:n]:
        sandbox.tamper("paynet", invoice_no=record.invoice_no, fields={"status": int(S.CANCEL)})
        subscription_refresh(record.subscription)
    return list(Drift.objects.filter(state=Drift.State.OPEN).values_list("pk", flat=True))


# --- The API: bulk writes --------------------------------------------------------------------


def _bulk_status(sandbox) -> tuple[str, dict]:
    return "/api/subscription-invoices/set-status/", {
        "ids": ids_of(waiting_ids(3)),
        "status": int(S.CANCEL),
        "reason": "r",
    }


def _status_all(sandbox) -> tuple[str, dict]:
    subscription = SubscriptionInvoice.objects.filter(status=S.WAITING).first().subscription
    return f"/api/subscriptions/{subscription.pk}/set-invoices-status/", {
        "status": int(S.CANCEL),
        "reason": "r",
    }


def _drift_repush(sandbox) -> tuple[str, dict]:
    return "/api/drift/repush/", {"ids": drift_entries(sandbox, 2), "reason": "back"}


def _bill_queries(sandbox) -> tuple[str, dict]:
    payofin_sync()
    return "/api/bill-query-batches/", {
        "lines": [{"soot_code": 1, "subscriber_no": "5000000000"}],
    }


BULK_WRITES = {
    "paynet-bulk-status": _bulk_status,
    "paynet-status-of-all-records": _status_all,
    "drift-repush-selection": _drift_repush,
    "payofin-bill-queries": _bill_queries,
}


@pytest.mark.parametrize("write", BULK_WRITES.values(), ids=BULK_WRITES.keys())
def test_api_replayed_bulk_write_answers_the_same_job_and_starts_no_second(
    mirror,  # noqa: F811
    api_operator,
    write,
):
    url, body = write(mirror)
    first = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    jobs = Job.objects.count()

    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")

    assert first.status_code == again.status_code == 202, first.content
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == jobs and BillQueryBatch.objects.count() <= 1
    record = IdempotencyRecord.objects.get(key="bulk-1")
    assert [job.pk for job in record.jobs.all()] == list(
        Job.objects.order_by("pk").values_list("pk", flat=True)
    )


@pytest.mark.parametrize("write", BULK_WRITES.values(), ids=BULK_WRITES.keys())
def test_api_bulk_key_reused_with_another_body_is_refused(mirror, api_operator, write):  # noqa: F811
    url, body = write(mirror)
    api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-2")
    jobs = Job.objects.count()

    other = api_operator.post(
        url, {**body, "reason": "another"}, format="json", HTTP_IDEMPOTENCY_KEY="bulk-2"
    )

    assert other.status_code == 409 and "another request" in other.json()["detail"]
    assert Job.objects.count() == jobs


def test_api_bulk_write_whose_first_request_died_after_launching_answers_its_job(
    mirror,  # noqa: F811
    api_operator,
):
    url, body = _bulk_status(mirror)
    first = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-died")
    # As if the web process had been killed after the launch, before it stored its answer.
    IdempotencyRecord.objects.update(
        status_code=None, response=None, created_at=timezone.now() - timedelta(hours=1)
    )

    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-died")

    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    assert Job.objects.count() == 1
    assert IdempotencyRecord.objects.get().status_code == 202  # the answer from now on


def test_api_bulk_write_that_failed_in_our_code_after_launching_answers_its_job(
    mirror,  # noqa: F811
    api_operator,
):
    url, body = _bulk_status(mirror)
    with mock.patch("subscriptions.api.JobRefSerializer", side_effect=RuntimeError("answer broke")):
        first = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-bug")

    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-bug")

    job = Job.objects.get()  # started once, and only once
    assert first.status_code == 202 and first.json()["job"]["id"] == job.pk
    assert "answering failed in our own code" in first.json()["detail"]
    assert again.status_code == 202 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"


def test_api_write_failed_in_our_code_before_starting_says_not_started_and_never_runs_again(
    mirror,  # noqa: F811
    api_operator,
):
    url, body = _bulk_status(mirror)
    with mock.patch(
        "subscriptions.services.job_create_frozen", side_effect=RuntimeError("our bug")
    ):
        first = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-none")

    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-none")

    assert first["Content-Type"] == "application/json"
    assert first.json()["started"] is False and "Send it again with a new" in first.json()["detail"]
    # The repeat answers the recorded outcome: it does not quietly run the write this time.
    assert again.status_code == first.status_code and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert not Job.objects.exists()
    fresh = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-new")
    assert fresh.status_code == 202 and Job.objects.count() == 1


def test_api_double_repush_of_one_drift_entry_starts_one_job(mirror, api_operator):  # noqa: F811
    (entry,) = drift_entries(mirror, 1)
    url = f"/api/drift/{entry}/repush/"

    first = api_operator.post(url, {"reason": "back"}, format="json", HTTP_IDEMPOTENCY_KEY="d-1")
    again = api_operator.post(url, {"reason": "back"}, format="json", HTTP_IDEMPOTENCY_KEY="d-1")

    assert first.status_code in (200, 202), first.content
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
    assert len(mirror.ledger("paynet", "invoice_status_update")) == 1


# --- The admin: the one-time token of every form that starts work ---------------------------


class _Form(HTMLParser):
    """What a browser posts back from the form with the given id: hidden inputs and selections."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.select = form_id, False, None
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == self.form_id:
            self.inside = True
        elif not self.inside:
            return
        elif tag == "input" and attrs.get("type") == "hidden" and attrs.get("name"):
            self.fields.append((attrs["name"], attrs.get("value", "")))
        elif tag == "select":
            self.select = attrs["name"]
        elif tag == "option" and self.select and "selected" in attrs:
            self.fields.append((self.select, attrs.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None


def form_data(response, form_id: str, **fields) -> dict[str, list[str]]:
    parser = _Form(form_id)
    parser.feed(response.content.decode())
    assert parser.fields, f"no form #{form_id} on the page"
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        if name != "csrfmiddlewaretoken":
            data.setdefault(name, []).append(value)
    data.update({name: [str(value)] for name, value in fields.items()})
    return data


def action_post(ids, action: str) -> dict:
    return {"action": action, "index": "0", "_selected_action": [str(i) for i in ids]}


def _status_confirm(client) -> tuple[str, dict]:
    first = client.post(INVOICES, action_post(ids_of(waiting_ids(3)), "change_status"))
    preview = client.post(
        INVOICES, form_data(first, "status-confirm", step="preview", status=int(S.CANCEL))
    )
    return INVOICES, form_data(preview, "status-confirm", step="confirm", reason="r")


def _status_all_confirm(client) -> tuple[str, dict]:
    subscription = SubscriptionInvoice.objects.filter(status=S.WAITING).first().subscription
    first = client.post(SUBSCRIPTIONS, action_post([subscription.pk], "change_all_invoices_status"))
    preview = client.post(
        SUBSCRIPTIONS,
        form_data(first, "status-all-confirm", step="preview", status=int(S.CANCEL)),
    )
    return SUBSCRIPTIONS, form_data(preview, "status-all-confirm", step="confirm", reason="r")


def _drift_confirm(client) -> tuple[str, dict]:
    entries = list(Drift.objects.values_list("pk", flat=True))
    first = client.post(DRIFTS, action_post(entries, "repush_selected"))
    return DRIFTS, form_data(first, "drift-confirm", step="confirm", reason="back")


ADMIN_CONFIRMATIONS = {
    "paynet-status": _status_confirm,
    "paynet-status-of-all-records": _status_all_confirm,
    "drift-repush": _drift_confirm,
}


@pytest.mark.parametrize("confirmation", ADMIN_CONFIRMATIONS.values(), ids=ADMIN_CONFIRMATIONS)
def test_admin_double_bulk_confirmation_starts_one_job(
    mirror,  # noqa: F811
    operator_client,
    confirmation,
):
    if confirmation is _drift_confirm:
        drift_entries(mirror, 2)
    url, data = confirmation(operator_client)
    assert data["launch_token"], "the confirmation carries its one-time token"

    first = operator_client.post(url, data)
    again = operator_client.post(url, data)  # the double click, or a reload of the answer

    job = Job.objects.get()
    assert first.status_code == again.status_code == 302
    assert again.url == job_page(job.pk)  # the first went there too, or to the list (drift)
    assert first.url in (again.url, DRIFTS)
    assert any("already sent; nothing was started again" in m for m in messages_of(again))


def test_admin_double_wisecp_bulk_item_edit_starts_one_job(sandbox, operator_client):
    wisecp_sync()
    # Items 1502 and 1504 of invoice 302 may move to 358 (the same customer; tests/billing).
    items = list(InvoiceItem.objects.filter(wisecp_id__in=[1502, 1504]))
    for action, fields in (
        ("set_due_date", {"due_date_0": "30.06.2031", "due_date_1": "23:59:59"}),
        ("move_to_invoice", {"target": "#358"}),
    ):
        first = operator_client.post(ITEMS, action_post([i.pk for i in items], action))
        preview = operator_client.post(
            ITEMS, form_data(first, "bulk-confirm", step="preview", **fields)
        )
        data = form_data(preview, "bulk-confirm", step="confirm", reason="r", **fields)
        before = Job.objects.count()

        done = operator_client.post(ITEMS, data)
        again = operator_client.post(ITEMS, data)

        assert Job.objects.count() == before + 1, action
        job = Job.objects.latest("pk")
        assert done.url == again.url == job_page(job.pk)


@pytest.mark.parametrize(
    ("changelist", "action", "setup"),
    [
        (SUBSCRIPTIONS, "refresh_from_paynet", lambda: [Subscription.objects.first().pk]),
        (WISECP_INVOICES, "refresh_from_wisecp", None),
    ],
    ids=["paynet-refresh", "wisecp-refresh"],
)
def test_admin_double_go_on_a_refresh_starts_one_job(
    mirror,  # noqa: F811
    operator_client,
    changelist,
    action,
    setup,
):
    if setup is None:
        wisecp_sync()
        from billing.models import Invoice

        ids = list(Invoice.objects.order_by("pk").values_list("pk", flat=True)[:2])
    else:
        ids = setup()
    page = operator_client.get(changelist)
    (token,) = set(form_data(page, "changelist-form")["launch_token"])
    data = {**action_post(ids, action), "launch_token": token}

    first = operator_client.post(changelist, data)
    again = operator_client.post(changelist, data)

    job = Job.objects.get()
    assert first.url == again.url == job_page(job.pk)
    # The list's next page is a new page: its token starts a new refresh.
    other = operator_client.get(changelist)
    assert form_data(other, "changelist-form")["launch_token"][0] != token


def test_admin_double_bill_query_confirmation_queues_one_batch(sandbox, operator_client):
    payofin_sync()
    shown = operator_client.post(
        BATCH_ADD, {"step": "preview", "text": "1;1345600\n1;0134569000", "text_source": "pasted"}
    )
    data = form_data(shown, "batch-confirm-form")

    first = operator_client.post(BATCH_ADD, data)
    again = operator_client.post(BATCH_ADD, data)

    batch = BillQueryBatch.objects.get()
    page = reverse("admin:billqueries_billquerybatch_change", args=[batch.pk])
    assert first.url == again.url == page
    assert Job.objects.count() == 1
    assert any("nothing was started again" in m for m in messages_of(again))


def _finished_with_failures(operator) -> Job:
    records = SubscriptionInvoice.objects.filter(pk__in=ids_of(waiting_ids(2)))
    job = subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=operator, reason="r"
    )
    prepare_job(job.pk)
    JobItem.objects.filter(job=job).update(state="done", outcome="failed")
    Job.objects.filter(pk=job.pk).update(state=Job.State.FAILED, failed=2)
    return Job.objects.get(pk=job.pk)


def test_admin_double_retry_queues_the_job_once(
    mirror,  # noqa: F811
    operator,
    operator_client,
    django_capture_on_commit_callbacks,
):
    job = _finished_with_failures(operator)
    url = reverse("admin:upstream_job_retry", args=[job.pk])
    data = form_data(operator_client.get(url), "job-confirm-form")

    with django_capture_on_commit_callbacks() as queued:
        first = operator_client.post(url, data)
        again = operator_client.post(url, data)

    assert first.url == again.url == job_page(job.pk)
    assert len(queued) == 1  # one run queued, not two
    assert any("nothing was started again" in m for m in messages_of(again))
    assert not any("still running" in m for m in messages_of(again))


def test_admin_double_cancel_cancels_once_and_says_so(mirror, operator, operator_client):  # noqa: F811
    records = SubscriptionInvoice.objects.filter(pk__in=ids_of(waiting_ids(2)))
    job = subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=operator, reason="r"
    )
    url = reverse("admin:upstream_job_cancel", args=[job.pk])
    data = form_data(operator_client.get(url), "job-confirm-form")

    operator_client.post(url, data)
    again = operator_client.post(url, data)

    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert any("nothing was started again" in m for m in messages_of(again))
    assert not any("already finished" in m for m in messages_of(again))


def test_admin_refused_confirmation_is_corrected_and_sent_with_its_token(
    mirror,  # noqa: F811
    operator_client,
):
    url, data = _status_confirm(operator_client)

    refused = operator_client.post(url, {**data, "reason": [""]})  # the reason forgotten
    assert refused.status_code == 200 and not Job.objects.exists()
    corrected = form_data(refused, "status-confirm", step="confirm", reason="r")
    assert corrected["launch_token"] == data["launch_token"]
    done = operator_client.post(url, corrected)

    assert done.url == job_page(Job.objects.get().pk)


def test_admin_confirmation_that_failed_in_our_code_is_not_started_by_its_repeat(
    mirror,  # noqa: F811
    operator_client,
):
    url, data = _status_confirm(operator_client)
    operator_client.raise_request_exception = False
    with mock.patch(
        "subscriptions.services.job_create_frozen", side_effect=RuntimeError("our bug")
    ):
        crashed = operator_client.post(url, data)
    assert crashed.status_code == 500

    again = operator_client.post(url, data)

    assert again.status_code == 302 and not Job.objects.exists()
    assert any("failed in our own code" in m for m in messages_of(again))


# --- At once: two connections racing (PostgreSQL) --------------------------------------------


def together(*works) -> list[object]:
    """Run each callable in its own thread (its own connection), started at one barrier."""
    start = threading.Barrier(len(works))
    results: list[object] = [None] * len(works)

    def run(i: int, work) -> None:
        try:
            start.wait(timeout=10)
            results[i] = work()
        except BaseException as error:  # handed to the test thread
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(works)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    close_old_connections()
    return results


def slow_launch(monkeypatch) -> None:
    """The launch takes a moment, so both copies are surely in flight together."""
    from subscriptions import services

    original = services.job_create_frozen

    def slow(**kwargs):
        import time

        time.sleep(0.3)
        return original(**kwargs)

    monkeypatch.setattr(services, "job_create_frozen", slow)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_api_concurrent_bulk_writes_with_one_key_start_one_job(
    mirror,  # noqa: F811
    operator,
    monkeypatch,
):
    require_postgres()
    url, body = _bulk_status(mirror)
    slow_launch(monkeypatch)

    def post():
        api = APIClient()
        api.force_authenticate(operator)
        response = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="race-1")
        return response.status_code, response.json()["job"]["id"]

    results = together(post, post)

    job = Job.objects.get()
    assert results == [(202, job.pk), (202, job.pk)], results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_admin_concurrent_double_confirmation_starts_one_job(
    mirror,  # noqa: F811
    operator,
    monkeypatch,
):
    require_postgres()
    client = Client()
    client.force_login(operator)
    url, data = _status_confirm(client)
    slow_launch(monkeypatch)

    def post():
        browser = Client()
        browser.force_login(operator)
        return browser.post(url, data).url

    results = together(post, post)

    job = Job.objects.get()
    assert results == [job_page(job.pk), job_page(job.pk)], results


def test_a_confirmation_page_keeps_its_token_across_preview_and_a_new_page_gets_a_new_one(
    mirror,  # noqa: F811
    operator_client,
):
    ids = ids_of(waiting_ids(2))
    one = operator_client.post(INVOICES, action_post(ids, "change_status"))
    two = operator_client.post(INVOICES, action_post(ids, "change_status"))
    preview = operator_client.post(
        INVOICES, form_data(one, "status-confirm", step="preview", status=int(S.CANCEL))
    )

    token = form_data(one, "status-confirm")["launch_token"]
    assert form_data(preview, "status-confirm")["launch_token"] == token
    assert form_data(two, "status-confirm")["launch_token"] != token


# --- keys are forgotten after their day -------------------------------------------------------


def test_the_periodic_sweep_forgets_keys_older_than_a_day(operator) -> None:
    from upstream.pushes.once import KEEP
    from upstream.tasks import jobs_sweep

    now = timezone.now()
    for n, age in enumerate([KEEP + timedelta(minutes=1), KEEP * 3, KEEP - timedelta(minutes=1)]):
        IdempotencyRecord.objects.create(
            user=operator, key=f"k{n}", method="POST", path="/", body_hash="x", created_at=now - age
        )

    result = jobs_sweep.call()

    assert result["keys_forgotten"] == 2
    # The key still within its day is kept: its repeat must still be answered from it.
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k2"]
