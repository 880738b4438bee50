"""Every exit releases: a single push or a job run that fails in our own code leaves nothing held
by the holder that stopped. A write that may have gone out stays in doubt and keeps its record
(under the item) until a read-back settles it; with nothing sent, the record is free and the job
closed as failed; the breaker's probe is let go.

Real HTTP against the sandbox; its ledger says what reached the upstream.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from tests.subscriptions.helpers import a_record
from upstream.calls.breaker import OPEN, PROBE, breaker_admit, breaker_get, breaker_release_probe
from upstream.calls.errors import PushFailed, PushInDoubt
from upstream.models import Job, JobItem, RecordClaim, UpstreamBreaker, UpstreamCall
from upstream.pushes import bulk, runner
from upstream.pushes import single as operations
from upstream.pushes.bulk import prepare_job
from upstream.pushes.kinds import kind_for

KIND = "paynet.invoice_status"


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture
def no_pause(monkeypatch):
    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))


def status_writes(sandbox) -> list[str]:
    return [e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]


def waiting(n: int):
    ids = list(
        SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").values_list("pk")[:n]
    )
    return SubscriptionInvoice.objects.filter(pk__in=[i for (i,) in ids])


def job_tasks(queued) -> list:
    return [r for r in queued if r.task.name == "job_run"]


def fail_once(original, error: Exception):
    """`original`, except that its first call raises `error` (a bug of ours, the database)."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return original(*args, **kwargs)

    return wrapper


def assert_held_by_its_item(record) -> JobItem:
    """The record's claim passed from the request to the item, which waits in doubt."""
    item = JobItem.objects.get(target_id=str(record.pk))
    claim = RecordClaim.objects.get(target_id=str(record.pk))
    assert claim.holder == runner.item_holder(item.pk) and claim.job_item_id == item.pk
    assert (item.state, item.in_doubt, item.claimed_by) == ("pending", True, "")
    assert "may have reached the upstream" in item.message
    return item


# After the send: in doubt, claimed by the item, read back by the worker ---------------------


def test_a_flush_that_fails_after_the_send_leaves_the_push_in_doubt_not_a_500(
    mirror, operator, no_pause, queued_tasks, django_capture_on_commit_callbacks
):
    record = a_record(S.WAITING)
    failing = fail_once(runner.flush_results, RuntimeError("database went away"))

    with (
        django_capture_on_commit_callbacks(execute=True),
        mock.patch.object(operations, "flush_results", failing),
        pytest.raises(PushInDoubt) as doubt,
    ):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    job = doubt.value.job
    assert "Internal error (RuntimeError)" in doubt.value.message
    assert_held_by_its_item(record)
    # Not left RUNNING with nobody on it: queued for the worker, which reads it back.
    assert [r.args for r in job_tasks(queued_tasks)] == [[job.pk]]
    record.refresh_from_db()
    assert record.status == S.WAITING  # the answer was not written: nothing local yet

    bulk.run_job(job.pk)

    job.refresh_from_db()
    record.refresh_from_db()
    assert (job.state, job.items.get().outcome) == ("succeeded", "ok")
    assert record.status == S.CANCEL  # the mirror follows the read-back
    assert status_writes(mirror) == [record.invoice_no]  # applied once, never resent
    assert not RecordClaim.objects.exists()


def test_a_read_back_that_crashes_in_the_request_leaves_the_push_in_doubt(
    mirror, operator, no_pause, queued_tasks
):
    record = a_record(S.WAITING)
    # The write lands but its answer is lost; the read-back in the request then hits a bug.
    mirror.faults({"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1})
    handler = kind_for(KIND)
    settle = fail_once(handler.settle, KeyError("status"))

    with mock.patch.object(handler, "settle", settle), pytest.raises(PushInDoubt) as doubt:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert_held_by_its_item(record)
    bulk.run_job(doubt.value.job.pk)
    record.refresh_from_db()
    assert record.status == S.CANCEL and doubt.value.job.items.get().outcome == "ok"
    assert status_writes(mirror) == [record.invoice_no]
    assert not RecordClaim.objects.exists()


def test_the_api_answers_202_with_the_job_when_recording_the_answer_fails(
    mirror, api_operator, no_pause
):
    record = a_record(S.WAITING)
    failing = fail_once(runner.flush_results, RuntimeError("database went away"))

    with mock.patch.object(operations, "flush_results", failing):
        response = api_operator.post(
            f"/api/subscription-invoices/{record.pk}/set-status/",
            {"status": int(S.CANCEL), "reason": "test"},
            format="json",
        )

    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["job"]["id"])
    assert job.inline and response.json()["job"]["state"] == "running"
    assert_held_by_its_item(record)


def test_an_immediate_backend_settles_it_in_the_request(
    transactional_db, mirror, operator, no_pause, settings
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    record = a_record(S.WAITING)
    failing = fail_once(runner.flush_results, RuntimeError("database went away"))

    with mock.patch.object(operations, "flush_results", failing):
        result = subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert result is not None
    job = Job.objects.get()
    record.refresh_from_db()
    assert (job.state, record.status) == ("succeeded", S.CANCEL)
    assert "reading back" in job.items.get().message
    assert status_writes(mirror) == [record.invoice_no]
    assert not RecordClaim.objects.exists()


# Before anything was sent: released, failed, said plainly ------------------------------------


def test_a_bug_before_the_send_releases_the_record_and_fails_the_job(
    mirror, operator, queued_tasks
):
    record = a_record(S.WAITING)
    handler = kind_for(KIND)

    with (
        mock.patch.object(handler, "push", side_effect=ValueError("bad payload")),
        pytest.raises(PushFailed) as failed,
    ):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert "nothing changed" in failed.value.message
    job = Job.objects.get()
    assert failed.value.job == job and job.state == "failed"
    assert not RecordClaim.objects.exists()
    assert mirror.requests("paynet", "invoice_status_update") == []
    assert job_tasks(queued_tasks) == []


def test_a_flush_that_fails_when_nothing_was_applied_releases_and_fails(
    mirror, operator, queued_tasks
):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "reject", "operation": "invoice_status_update", "message": "Hayır"})
    failing = fail_once(runner.flush_results, RuntimeError("database went away"))

    with (
        mock.patch.object(operations, "flush_results", failing),
        pytest.raises(PushFailed) as failed,
    ):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    job = failed.value.job
    job.refresh_from_db()
    item = job.items.get()
    assert (job.state, item.state, item.outcome) == ("failed", "done", "failed")
    assert not RecordClaim.objects.exists()
    assert job_tasks(queued_tasks) == []
    assert status_writes(mirror) == []
    # The record is free: the corrected push goes through at once.
    mirror.faults()
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="test")
    assert status_writes(mirror) == [record.invoice_no]


def test_the_api_answers_the_failure_with_its_job_not_a_500(mirror, api_operator):
    record = a_record(S.WAITING)
    handler = kind_for(KIND)

    with mock.patch.object(handler, "push", side_effect=ValueError("bad payload")):
        response = api_operator.post(
            f"/api/subscription-invoices/{record.pk}/set-status/",
            {"status": int(S.CANCEL), "reason": "test"},
            format="json",
        )

    # Our own failure, never a 500: nothing was sent, said so, with the job.
    assert response.status_code == 503
    body = response.json()
    assert "nothing changed" in body["detail"] and body["job"]["state"] == "failed"
    assert body["sent"] is False
    assert not RecordClaim.objects.exists()


def test_a_key_whose_push_failed_in_our_code_answers_that_outcome_not_a_second_send(
    mirror, api_operator
):
    record = a_record(S.WAITING)
    url = f"/api/subscription-invoices/{record.pk}/set-status/"
    body = {"status": int(S.CANCEL), "reason": "test"}
    with mock.patch.object(kind_for(KIND), "push", side_effect=ValueError("bad payload")):
        first = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-ours")

    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-ours")

    assert first.status_code == again.status_code == 503
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert status_writes(mirror) == []  # the repeat was answered, not sent
    assert Job.objects.count() == 1
    # A new key is a new request: it goes through.
    fresh = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-new")
    assert fresh.status_code == 200 and status_writes(mirror) == [record.invoice_no]


# A job run that fails --------------------------------------------------------------------------


def test_a_job_run_that_fails_lets_go_of_the_breakers_probe_and_hands_its_items_over(
    mirror, operator, no_pause, queued_tasks
):
    records = waiting(2)
    job = subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)
    # The cooldown is over: this run takes the probe.
    UpstreamBreaker.objects.create(
        service="paynet", state=OPEN, failures=3, open_until=timezone.now() - timedelta(seconds=1)
    )
    failing = fail_once(runner.flush_results, RuntimeError("database went away"))

    with (
        mock.patch("upstream.pushes.bulk.flush_results", failing),
        pytest.raises(RuntimeError),
    ):
        bulk.run_job(job.pk)

    breaker = breaker_get("paynet")
    assert breaker.probe_holder == "" and breaker.state == OPEN
    assert breaker.open_until <= timezone.now()  # the next sender may probe at once
    assert breaker_admit("paynet", "another-process").kind == PROBE  # not ~109 s later
    breaker_release_probe("paynet", "another-process")
    # What went out is in doubt and keeps its record under its item; nothing stays "sending".
    assert not JobItem.objects.filter(job=job, state="sending").exists()
    sent = JobItem.objects.filter(job=job, in_doubt=True).values_list("pk", flat=True)
    assert sent.exists()
    claims = RecordClaim.objects.values_list("holder", flat=True)
    assert sorted(claims) == sorted(runner.item_holder(pk) for pk in sent)
    assert UpstreamCall.objects.filter(job=job, outcome="pending").exists()  # the evidence

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert (job.state, job.succeeded) == ("succeeded", 2)
    assert sorted(status_writes(mirror)) == sorted(records.values_list("invoice_no", flat=True))
    assert not RecordClaim.objects.exists()
