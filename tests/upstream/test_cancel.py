"""Cancel stops sending: after a cancel is answered, only the requests already in flight complete.

The job runs in a thread of its own (as a worker would) against a slowed sandbox, and is
cancelled mid-way through the API; the sandbox's ledger says what was really written and when.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings as django_settings
from django.db import connections

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import paynet_sync
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes import bulk
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_resume_cancelled

# The runner's thread needs the rows this thread committed.
pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENCY = 4
LATENCY_MS = 400  # well under the tests' read timeout


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """A job created here is queued and never runs by itself: the test runs it."""


def waiting_job(n: int, actor) -> Job:
    ids = list(
        SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
        .order_by("pk")
        .values_list("pk", flat=True)[:n]
    )
    assert len(ids) == n
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk__in=ids),
        status=InvoiceStatus.CANCEL,
        actor=actor,
        reason="test",
    )
    prepare_job(job.pk)
    return job


def writes(sandbox) -> list[dict]:
    return sandbox.ledger("paynet", "invoice_status_update")


def run_in_thread(job_id: int) -> threading.Thread:
    def run() -> None:
        try:
            bulk.run_job(job_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(30, id="fewer-than-a-chunk"),
        pytest.param(django_settings.JOBS_CHUNK_SIZE + 36, id="more-than-a-chunk"),
    ],
)
def test_a_cancel_mid_job_sends_only_what_was_in_flight(
    sandbox, operator, api_operator, settings, records
):
    paynet_sync()
    settings.PAYNET_CONCURRENCY = CONCURRENCY
    settings.APPROVAL_MIN_ITEMS = 1_000_000  # no second person: the push itself is under test
    settings.APPROVAL_MIN_AMOUNT = 10**12
    job = waiting_job(records, operator)
    assert job.state == Job.State.QUEUED
    sandbox.latency(LATENCY_MS)

    thread = run_in_thread(job.pk)
    try:
        deadline = time.monotonic() + 30
        while len(writes(sandbox)) < 2 * CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.02)
        answer = api_operator.post(f"/api/jobs/{job.pk}/cancel/")
        answered_at = time.time()
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert answer.status_code == 200, answer.content

    ledger = writes(sandbox)
    late = [e for e in ledger if e["at"] > answered_at]
    assert len(late) <= CONCURRENCY, "after the answer, only the requests in flight complete"
    assert 2 * CONCURRENCY <= len(ledger) < records

    job.refresh_from_db()
    sent = {e["request"]["invoice_no"] for e in ledger}
    assert len(sent) == len(ledger), "nothing was written twice"
    assert (job.state, job.succeeded, job.failed, job.cancelled) == (
        Job.State.CANCELLED,
        len(ledger),
        0,
        records - len(ledger),
    )
    assert job.cancel_taken_at is not None
    # The answer counted exactly what was not sent, and what was (or was on its way).
    body = answer.json()
    assert (body["not_sent"], body["sent"]) == (records - len(ledger), len(ledger))
    items = JobItem.objects.filter(job=job)
    ok = items.filter(outcome=JobItem.Outcome.OK)
    # target_id is text: compare as ids (PostgreSQL has no bigint = varchar).
    ok_records = SubscriptionInvoice.objects.filter(
        pk__in=[int(pk) for pk in ok.values_list("target_id", flat=True)]
    )
    assert set(ok_records.values_list("invoice_no", flat=True)) == sent
    assert set(ok_records.values_list("status", flat=True)) == {InvoiceStatus.CANCEL}
    cancelled = items.filter(outcome=JobItem.Outcome.CANCELLED)
    assert cancelled.count() == records - len(ledger)
    assert set(cancelled.values_list("state", flat=True)) == {JobItem.State.DONE}
    # No call is logged for an item that was not sent, and none is left pending.
    assert not UpstreamCall.objects.filter(job_item__in=cancelled).exists()
    assert not UpstreamCall.objects.filter(job=job, outcome="pending").exists()
    assert api_operator.get(f"/api/jobs/{job.pk}/").json()["sent"] == len(ledger)

    # The cancelled items can be resumed: each is then sent once, none twice.
    sandbox.latency(0)
    job_resume_cancelled(job=job, actor=operator)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.succeeded, job.cancelled) == (Job.State.SUCCEEDED, records, 0)
    everything = [e["request"]["invoice_no"] for e in writes(sandbox)]
    assert len(everything) == len(set(everything)) == records
