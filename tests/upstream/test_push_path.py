"""One path for every push: recorded before sending, one push at a time per record, exactly once.

Real HTTP against the sandbox; its ledger says what reached the upstream.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from subscriptions.client import PaynetClient
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_create,
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
    subscription_set_status_all,
)
from subscriptions.sync import paynet_sync
from tests.subscriptions.helpers import a_record, a_subscription, upstream_record
from upstream import tasks
from upstream.calls.errors import PushConflict, PushInDoubt, UpstreamRejectedError
from upstream.models import IdempotencyRecord, Job, JobItem, RecordClaim, UpstreamCall
from upstream.pushes import bulk, runner
from upstream.pushes import single as operations
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_retry_failed
from upstream.pushes.kinds import kind_for

VAL_DATE = timezone.now() + timedelta(days=30)


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture
def no_pause(monkeypatch):
    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))
    monkeypatch.setattr(operations, "CLAIM_WAIT_SECONDS", 0.2)


def status_writes(sandbox) -> list[str]:
    return [e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """A job created here is queued and never runs by itself: each test decides who runs it."""


def queued_job(records, actor, status=S.CANCEL) -> Job:
    """A bulk job with its items written (the worker would expand the selection first)."""
    job = subscription_invoice_set_status_bulk(
        records=records, status=status, actor=actor, reason="test"
    )
    prepare_job(job.pk)
    return job


def waiting(n: int):
    ids = list(
        SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").values_list("pk")[:n]
    )
    return SubscriptionInvoice.objects.filter(pk__in=[i for (i,) in ids])


# Recorded before it is sent ----------------------------------------------------------------


def test_single_push_is_an_operation_with_actor_reason_and_its_call(mirror, operator):
    record = a_record(S.WAITING)

    subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="Müşteri iptal etti"
    )

    job = Job.objects.get()
    assert (job.inline, job.kind, job.state) == (True, "paynet.invoice_status", "succeeded")
    assert (job.created_by, job.reason) == (operator, "Müşteri iptal etti")
    item = job.items.get()
    call = UpstreamCall.objects.get(operation="invoice_status_update")
    assert (item.outcome, item.call_id, call.job_item_id, call.outcome) == (
        "ok",
        call.pk,
        item.pk,
        "ok",
    )
    assert call.request["invoice_no"] == record.invoice_no
    assert not RecordClaim.objects.exists()


def test_claimed_items_have_their_call_committed_pending_before_anything_is_sent(mirror, operator):
    job = queued_job(waiting(3), operator)

    claimed = bulk.claim_items(job, "worker-a", 10)

    assert len(claimed) == 3 and mirror.ledger("paynet") == []
    pending = UpstreamCall.objects.filter(job=job, outcome="pending")
    assert sorted(pending.values_list("pk", flat=True)) == sorted(i.call_id for i in claimed)
    assert set(pending.values_list("job_item_id", flat=True)) == {i.id for i in claimed}
    assert RecordClaim.objects.filter(holder="worker-a").count() == 3


def test_web_process_killed_mid_push_is_settled_by_the_sweep(mirror, operator, no_pause):
    record = a_record(S.WAITING)
    original = PaynetClient.invoice_status_update

    def send_then_die(self, **kwargs):
        original(self, **kwargs)
        raise KeyboardInterrupt  # the process dies after the request left, before any answer

    with (
        mock.patch.object(PaynetClient, "invoice_status_update", send_then_die),
        pytest.raises(KeyboardInterrupt),
    ):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    job = Job.objects.get()
    item = job.items.get()
    assert (job.state, item.state) == ("running", "sending")
    (call,) = UpstreamCall.objects.filter(operation="invoice_status_update")
    assert call.outcome == "pending"  # the evidence the sweep starts from
    record.refresh_from_db()
    assert record.status == S.WAITING

    # The lease runs out; the sweep reads the record back through the worker.
    past = timezone.now() - timedelta(hours=1)
    JobItem.objects.filter(pk=item.pk).update(lease_until=past)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=past)
    UpstreamCall.objects.filter(pk=call.pk).update(created_at=past)
    assert runner.sweep()["released"] == 1  # requeued, not run: the worker is called next
    bulk.run_job(job.pk)
    result = runner.sweep()

    job.refresh_from_db()
    record.refresh_from_db()
    call.refresh_from_db()
    assert job.state == "succeeded" and record.status == S.CANCEL
    assert status_writes(mirror) == [record.invoice_no]  # applied once, never resent
    assert result["calls_settled"] == 1
    assert call.outcome == "in_doubt" and "Read back afterwards: OK" in call.error


def test_a_crash_after_the_write_went_out_is_in_doubt_not_failed(mirror, operator, no_pause):
    job = queued_job(waiting(1), operator)
    handler = kind_for(job.kind)

    def push_then_crash(client, item):
        type(handler).push(handler, client, item)
        raise ValueError("bug after the write")

    with mock.patch.object(handler, "push", push_then_crash):
        claimed = bulk.claim_items(job, "w", 1, handler)
        result = runner.work_item(job, handler, claimed[0])

    assert result.outcome == JobItem.Outcome.IN_DOUBT
    runner.flush_results(job, handler, "w", [result])
    item = job.items.get()
    assert (item.state, item.in_doubt) == ("pending", True)
    bulk.run_job(job.pk)  # read back: it landed, so it is not sent again
    assert len(status_writes(mirror)) == 1
    assert job.items.get().outcome == "ok"


def test_a_long_retry_after_reschedules_the_item(mirror, operator, no_pause):
    mirror.faults(
        {"kind": "rate_limit", "seconds": 30, "operation": "invoice_status_update", "times": 9}
    )
    job = queued_job(waiting(1), operator)
    handler = kind_for(job.kind)

    claimed = bulk.claim_items(job, "w", 1, handler)
    result = runner.work_item(job, handler, claimed[0])
    runner.flush_results(job, handler, "w", [result])

    item = job.items.get()
    assert (item.state, item.outcome, item.in_doubt) == ("pending", "", False)
    assert timedelta(seconds=25) < item.lease_until - timezone.now() <= timedelta(seconds=30)
    assert "Sent again after 30 s" in item.message
    assert status_writes(mirror) == []


# One push at a time per record ---------------------------------------------------------------


def test_a_single_push_waits_for_a_job_holding_the_record_then_is_refused(
    mirror, operator, no_pause
):
    records = waiting(2)
    job = queued_job(records, operator)
    bulk.claim_items(job, "worker-a", 10)
    record = records.first()

    with pytest.raises(PushConflict) as refused:
        subscription_invoice_set_status(
            record=record, status=S.EXTERNAL_CHARGED, actor=operator, reason="test"
        )

    assert "being sent right now" in str(refused.value)
    assert mirror.ledger("paynet") == []
    assert Job.objects.filter(inline=True).count() == 0  # nothing recorded for the refusal


def test_a_job_never_writes_its_stale_target_over_a_newer_change(mirror, operator, no_pause):
    records = waiting(3)
    job = queued_job(records, operator)  # previewed: waiting -> cancelled
    changed = records.order_by("pk").first()
    subscription_invoice_set_status(
        record=changed, status=S.EXTERNAL_CHARGED, actor=operator, reason="paid at the desk"
    )

    bulk.run_job(job.pk)

    job.refresh_from_db()
    changed.refresh_from_db()
    assert (job.state, job.succeeded, job.skipped, job.failed) == ("succeeded", 2, 1, 0)
    assert changed.status == S.EXTERNAL_CHARGED
    assert upstream_record(mirror, changed)["status"] == S.EXTERNAL_CHARGED
    skipped = job.items.get(outcome="skipped")
    assert "changed since the preview" in skipped.message
    assert not UpstreamCall.objects.filter(job_item=skipped).exists()  # nothing was sent
    assert status_writes(mirror).count(changed.invoice_no) == 1  # only the operator's change


# Exactly once --------------------------------------------------------------------------------


def test_a_double_submitted_create_makes_one_record(mirror, operator):
    subscription = a_subscription(fixed=False)
    kwargs = {
        "subscription": subscription,
        "val_date": VAL_DATE,
        "amount": Decimal("75.00"),
        "actor": operator,
        "reason": "test",
        "idempotency_key": "form-token-1",
    }

    first = subscription_invoice_create(**kwargs)
    second = subscription_invoice_create(**kwargs)

    assert first.pk == second.pk
    assert len(mirror.ledger("paynet", "create_invoice")) == 1
    assert Job.objects.filter(kind="paynet.create_invoice").count() == 1


def test_a_create_carries_a_generated_invoice_no_when_staff_leave_it_empty(mirror, operator):
    record = subscription_invoice_create(
        subscription=a_subscription(fixed=False),
        val_date=VAL_DATE,
        amount=Decimal("12.00"),
        actor=operator,
        reason="test",
    )

    (write,) = mirror.ledger("paynet", "create_invoice")
    assert write["request"]["invoice_no"] == record.invoice_no
    assert record.invoice_no.startswith("9") and len(record.invoice_no) == 10
    job = Job.objects.get(kind="paynet.create_invoice")
    assert job.items.get().payload["invoice_no"] == record.invoice_no


def test_api_replays_the_first_answer_for_a_repeated_key_and_sends_nothing(mirror, api_operator):
    record = a_record(S.WAITING)
    url = f"/api/subscription-invoices/{record.pk}/set-status/"
    body = {"status": int(S.CANCEL), "reason": "test"}

    first = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert status_writes(mirror) == [record.invoice_no]
    assert IdempotencyRecord.objects.get().status_code == 200


def test_api_refuses_a_reused_key_with_another_body(mirror, api_operator):
    record = a_record(S.WAITING)
    url = f"/api/subscription-invoices/{record.pk}/set-status/"
    api_operator.post(
        url, {"status": int(S.CANCEL), "reason": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )

    other = api_operator.post(
        url,
        {"status": int(S.EXTERNAL_CHARGED), "reason": "a"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )

    assert other.status_code == 409
    assert "another request" in other.json()["detail"]
    assert len(status_writes(mirror)) == 1


def test_api_answers_409_while_another_push_holds_the_record(mirror, api_operator, no_pause):
    record = a_record(S.WAITING)
    from tests.conftest import hold_claim

    hold_claim(record)

    response = api_operator.post(
        f"/api/subscription-invoices/{record.pk}/set-status/",
        {"status": int(S.CANCEL), "reason": "test"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-3",
    )

    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert mirror.ledger("paynet") == []
    assert not IdempotencyRecord.objects.exists()  # a busy answer is not kept: retry may pass


def test_api_answers_202_with_the_job_when_the_answer_never_came(mirror, api_operator):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "drop", "operation": "invoice_status_update", "times": 1})
    mirror.faults(
        {"kind": "drop", "operation": "invoice_status_update", "times": 1},
        {"kind": "status", "status": 503, "operation": "invoice_list", "times": 3},
    )

    response = api_operator.post(
        f"/api/subscription-invoices/{record.pk}/set-status/",
        {"status": int(S.CANCEL), "reason": "test"},
        format="json",
    )

    assert response.status_code == 202
    body = response.json()
    job = Job.objects.get(pk=body["job"]["id"])
    assert job.inline and body["job"]["state"] == "running"
    assert "being checked" in body["detail"]


# The sweep -----------------------------------------------------------------------------------


def test_the_periodic_sweep_survives_a_failed_run_and_is_never_doubled(db, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

    with (
        mock.patch.object(runner, "sweep", side_effect=RuntimeError("database went away")),
        pytest.raises(RuntimeError),
    ):
        tasks.jobs_sweep.call(reschedule=True)
    tasks.jobs_sweep.call(reschedule=True)

    waiting_sweeps = DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, task_path__endswith=".jobs_sweep"
    )
    assert waiting_sweeps.count() == 1
    assert waiting_sweeps.get().run_after > timezone.now()


def test_the_sweep_closes_a_task_a_killed_worker_left_running(mirror, operator, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    job = queued_job(waiting(1), operator)
    task = tasks.job_run.enqueue(job.pk)
    DBTaskResult.objects.filter(pk=task.id).update(
        status=TaskResultStatus.RUNNING, started_at=timezone.now()
    )
    Job.objects.filter(pk=job.pk).update(
        task_id=str(task.id), state="running", heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    result = runner.sweep(enqueue=False)

    assert result["tasks_closed"] == 1
    row = DBTaskResult.objects.get(pk=task.id)
    assert row.status == TaskResultStatus.FAILED and "sweep" in row.traceback
    # django-tasks imports the class the row names when its error is read.
    assert row.exception_class_path == "upstream.pushes.runner.WorkerStopped"
    assert row.task_result.errors[0].exception_class is runner.WorkerStopped


def test_the_record_page_shows_who_changed_it_why_and_the_job(mirror, operator, operator_client):
    record = a_record(S.WAITING)
    subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="Müşteri iptal etti"
    )
    job = Job.objects.get()

    page = operator_client.get(
        reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])
    )

    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="record-operations"' in html
    assert "Müşteri iptal etti" in html and "operator" in html
    assert reverse("admin:upstream_job_change", args=[job.pk]) in html


def test_the_job_page_lists_items_skipped_as_changed_since_the_preview(
    mirror, operator, operator_client, no_pause
):
    records = waiting(2)
    job = queued_job(records, operator)
    changed = records.order_by("pk").first()
    subscription_invoice_set_status(
        record=changed, status=S.EXTERNAL_CHARGED, actor=operator, reason="paid"
    )
    bulk.run_job(job.pk)

    page = operator_client.get(reverse("admin:upstream_job_change", args=[job.pk]))

    html = page.content.decode()
    assert 'id="job-skipped">1<' in html
    assert 'id="job-skipped-items"' in html and changed.invoice_no in html


def test_a_form_refused_by_paynet_can_be_sent_again_with_its_token(mirror, operator):
    subscription = a_subscription(fixed=False)
    kwargs = {
        "subscription": subscription,
        "val_date": VAL_DATE,
        "amount": Decimal("33.00"),
        "actor": operator,
        "reason": "test",
        "idempotency_key": "form-token-2",
    }
    mirror.faults({"kind": "reject", "operation": "create_invoice", "message": "Bayi bloke"})
    with pytest.raises(UpstreamRejectedError):
        subscription_invoice_create(**kwargs)
    mirror.faults()

    record = subscription_invoice_create(**kwargs)

    assert len(mirror.ledger("paynet", "create_invoice")) == 1
    assert record.amount == Decimal("33.00")
    assert Job.objects.filter(kind="paynet.create_invoice").count() == 2


@pytest.mark.parametrize("heartbeat", ["stale", "never"])
def test_the_sweep_closes_the_dead_task_of_a_job_it_requeues(mirror, operator, settings, heartbeat):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    job = queued_job(waiting(1), operator)
    task = tasks.job_run.enqueue(job.pk)
    DBTaskResult.objects.filter(pk=task.id).update(
        status=TaskResultStatus.RUNNING, started_at=timezone.now()
    )
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(
        task_id=str(task.id),
        created_at=an_hour_ago,
        # "never": the worker was killed between taking the task and its first heartbeat.
        heartbeat_at=an_hour_ago if heartbeat == "stale" else None,
    )

    result = runner.sweep()  # re-queues the job: its task_id then names the new task

    assert (result["requeued"], result["tasks_closed"]) == (1, 1)
    assert DBTaskResult.objects.get(pk=task.id).status == TaskResultStatus.FAILED


def test_api_key_of_a_request_that_died_is_answered_from_its_operation(mirror, api_operator):
    record = a_record(S.WAITING)
    url = f"/api/subscription-invoices/{record.pk}/set-status/"
    body = {"status": int(S.CANCEL), "reason": "test"}
    api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-died")
    # As if the web process had been killed after pushing, before storing its answer.
    IdempotencyRecord.objects.update(
        status_code=None, response=None, created_at=timezone.now() - timedelta(hours=1)
    )

    again = api_operator.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-died")

    assert again.status_code == 200 and again.json()["status"] == S.CANCEL
    assert status_writes(mirror) == [record.invoice_no]  # answered from the operation
    assert IdempotencyRecord.objects.get().status_code == 200


def test_a_jobs_read_back_is_recorded_pending_before_it_is_sent(mirror, operator, no_pause):
    job = queued_job(waiting(1), operator)
    handler = kind_for(job.kind)
    claimed = bulk.claim_items(job, "w", 1, handler)
    JobItem.objects.filter(pk=claimed[0].id).update(in_doubt=True)
    item = replace(claimed[0], in_doubt=True)
    reserved = []

    def reserve(call):
        # The runner's thread commits this before the worker thread may send the request.
        assert call.outcome == "pending" and mirror.ledger("paynet") == []
        reserved.append(runner.insert_call(call))
        return reserved[-1]

    result = runner.work_item(job, handler, item, reserve)
    runner.flush_results(job, handler, "w", [result])

    reads = UpstreamCall.objects.filter(operation="invoice_list")
    assert list(reads.values_list("pk", flat=True)) == reserved  # finished in place
    assert set(reads.values_list("outcome", "mutating")) == {("ok", False)}
    assert UpstreamCall.objects.filter(operation="invoice_status_update", outcome="ok").count() == 1


def test_a_job_queued_by_another_task_backend_does_not_stop_the_sweep(
    mirror, operator, settings, django_capture_on_commit_callbacks
):
    # RQ (and the immediate and dummy backends) name their tasks with ids that are not UUIDs.
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    job = queued_job(waiting(1), operator)
    Job.objects.filter(pk=job.pk).update(
        task_id="tLYpRq7x2k3", state="running", heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = runner.sweep()

    assert result["requeued"] == 1
    assert DBTaskResult.objects.filter(task_path__endswith=".job_run").count() == 1


def test_a_result_that_cannot_be_written_here_stays_in_doubt_and_spares_the_others(
    mirror, operator, no_pause
):
    job = queued_job(waiting(3), operator)
    handler = kind_for(job.kind)
    claimed = bulk.claim_items(job, "w", 3, handler)
    results = [runner.work_item(job, handler, item) for item in claimed]
    bad = claimed[1]
    original = type(handler).apply

    def apply_but_not_the_bad_one(results):
        if any(r.item.id == bad.id for r in results):
            raise OverflowError("mirror column too small")
        original(handler, results)

    with mock.patch.object(handler, "apply", apply_but_not_the_bad_one):
        runner.flush_results(job, handler, "w", results)

    items = {i.pk: i for i in job.items.all()}
    assert [items[c.id].outcome for c in claimed] == ["ok", "", "ok"]
    assert (items[bad.id].state, items[bad.id].in_doubt) == ("pending", True)
    assert "writing it here failed" in items[bad.id].message
    assert UpstreamCall.objects.filter(job=job, outcome="ok").count() == 3  # all calls kept
    bulk.run_job(job.pk)  # read back: it is there, applied now
    assert job.items.get(pk=bad.id).outcome == "ok"
    assert len(status_writes(mirror)) == 3


def test_a_push_in_doubt_keeps_its_record_until_it_is_settled(mirror, operator, no_pause):
    record = a_record(S.WAITING)
    # The write lands but its answer is lost, and the read-back in the request fails too.
    mirror.faults(
        {"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1},
        {"kind": "status", "status": 503, "operation": "invoice_list", "times": 3},
    )
    with pytest.raises(PushInDoubt) as first:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    with pytest.raises(PushConflict):  # no second push on a mirror that may be wrong
        subscription_invoice_set_status(
            record=record, status=S.EXTERNAL_CHARGED, actor=operator, reason="test"
        )

    bulk.run_job(first.value.job.pk)  # the worker reads back: it landed
    record.refresh_from_db()
    assert record.status == S.CANCEL and first.value.job.items.get().outcome == "ok"
    assert not RecordClaim.objects.exists()
    assert status_writes(mirror) == [record.invoice_no]


def test_a_refused_single_create_cannot_be_retried_into_a_second_record(mirror, operator):
    subscription = a_subscription(fixed=False)
    kwargs = {
        "subscription": subscription,
        "val_date": VAL_DATE,
        "amount": Decimal("41.00"),
        "actor": operator,
        "reason": "test",
        "idempotency_key": "form-token-3",
    }
    mirror.faults({"kind": "reject", "operation": "create_invoice", "message": "Bayi bloke"})
    with pytest.raises(UpstreamRejectedError):
        subscription_invoice_create(**kwargs)
    mirror.faults()
    subscription_invoice_create(**kwargs)  # the form sent again: created once
    first = Job.objects.filter(kind="paynet.create_invoice").order_by("pk").first()

    with pytest.raises(ValidationError) as refused:
        job_retry_failed(job=first, actor=operator)

    assert "not retried here" in str(refused.value)
    assert len(mirror.ledger("paynet", "create_invoice")) == 1


def test_a_create_retried_later_is_checked_again_and_skipped_as_a_duplicate(
    mirror, operator, no_pause
):
    subscription = a_subscription(fixed=False)
    # The same record (day and amount) was created another way...
    subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=Decimal("55.00"),
        actor=operator,
        reason="test",
    )
    # ... and an old create of it (a job written before it) is run later. (While that create
    # was waiting, the other way was refused: tests/upstream/test_in_doubt_holds.py.)
    job = Job.objects.create(kind="paynet.create_invoice", title="t", created_by=operator)
    payload = {
        "subscription_id": subscription.subscription_id,
        "invoice_no": "9000000001",
        "val_date": VAL_DATE.isoformat(),
        "amount": "55.00",
        "generated": True,
    }
    JobItem.objects.create(
        job=job,
        position=1,
        target_type="subscriptions.subscription",
        target_id=str(subscription.pk),
        target_repr="x",
        payload=payload,
    )

    bulk.run_job(job.pk)

    item = job.items.get()
    assert item.outcome == "skipped" and "same charge date and amount" in item.message
    assert len(mirror.ledger("paynet", "create_invoice")) == 1


def test_a_typed_number_paynet_already_has_is_refused_not_taken_for_ours(mirror, operator):
    subscription = a_subscription(fixed=False)
    existing = subscription.invoices.first()
    number, amount = existing.invoice_no, existing.amount
    existing.delete()  # Paynet has it; the mirror does not (not synced yet)

    with pytest.raises(ValidationError) as refused:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=amount,
            invoice_no=number,
            actor=operator,
            reason="test",
        )

    assert "already has a payment record" in str(refused.value)
    assert not subscription.invoices.filter(invoice_no=number).exists()


def test_status_of_all_records_and_single_pushes_of_them_exclude_each_other(
    mirror, operator, no_pause
):
    record = a_record(S.WAITING)
    subscription = record.subscription
    job = subscription_set_status_all(
        subscriptions=Subscription.objects.filter(pk=subscription.pk),
        status=S.CANCEL,
        actor=operator,
        reason="all",
    )
    prepare_job(job.pk)
    bulk.claim_items(job, "worker-a", 1)  # the job is about to send

    with pytest.raises(PushConflict):
        subscription_invoice_set_status(
            record=record, status=S.EXTERNAL_CHARGED, actor=operator, reason="desk"
        )
    assert mirror.ledger("paynet") == []


def test_status_of_all_records_is_skipped_when_a_record_changed_since_the_preview(
    mirror, operator, no_pause
):
    record = a_record(S.WAITING)
    job = subscription_set_status_all(
        subscriptions=Subscription.objects.filter(pk=record.subscription_id),
        status=S.CANCEL,
        actor=operator,
        reason="all",
    )
    subscription_invoice_set_status(
        record=record, status=S.EXTERNAL_CHARGED, actor=operator, reason="paid at the desk"
    )

    bulk.run_job(job.pk)

    item = job.items.get()
    assert item.outcome == "skipped" and "changed since the" in item.message
    assert mirror.ledger("paynet", "invoices_status_update_all") == []
    record.refresh_from_db()
    assert record.status == S.EXTERNAL_CHARGED


def test_a_key_reused_for_another_change_of_the_same_record_is_refused(mirror, operator):
    record = a_record(S.WAITING)
    subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="r", idempotency_key="k-9"
    )

    with pytest.raises(PushConflict) as refused:
        subscription_invoice_set_status(
            record=record, status=S.WAITING, actor=operator, reason="r", idempotency_key="k-9"
        )

    assert "already used for another change" in str(refused.value)
    assert len(status_writes(mirror)) == 1


# The job page: confirm, who, resume ------------------------------------------------------------


def test_cancel_asks_first_records_who_and_the_cancelled_items_can_be_resumed(
    mirror, operator, operator_client, no_pause
):
    job = queued_job(waiting(4), operator)
    cancel = reverse("admin:upstream_job_cancel", args=[job.pk])

    asked = operator_client.post(cancel)  # the button: a page that asks, nothing happens yet

    assert asked.status_code == 200 and 'id="job-confirm-button"' in asked.content.decode()
    job.refresh_from_db()
    assert job.state == "queued"

    operator_client.post(cancel, {"confirm": "yes"})
    job.refresh_from_db()
    assert (job.state, job.cancelled, job.cancelled_by) == ("cancelled", 4, operator)
    page = operator_client.get(reverse("admin:upstream_job_change", args=[job.pk])).content
    assert b'value="0"' in page and b"0%" in page  # a cancelled job does not look complete
    assert b'id="job-resume"' in page

    resume = reverse("admin:upstream_job_resume", args=[job.pk])
    operator_client.post(resume, {"confirm": "yes"})
    job.refresh_from_db()
    assert (job.state, job.cancelled, job.retried_by) == ("queued", 0, operator)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.succeeded) == ("succeeded", 4)
    assert len(status_writes(mirror)) == 4


def test_retry_is_confirmed_and_records_who_retried(mirror, operator, operator_client, no_pause):
    mirror.faults({"kind": "reject", "operation": "invoice_status_update", "times": 1})
    job = queued_job(waiting(2), operator)
    bulk.run_job(job.pk)
    retry = reverse("admin:upstream_job_retry", args=[job.pk])

    asked = operator_client.post(retry)
    assert "Send the 1 failed items again?" in asked.content.decode()
    operator_client.post(retry, {"confirm": "yes"})

    job.refresh_from_db()
    assert job.retried_by == operator and job.retried_at is not None
    page = operator_client.get(reverse("admin:upstream_job_change", args=[job.pk])).content
    assert b"Retried by" in page


def test_an_item_left_in_doubt_says_what_happens_next(mirror, operator, no_pause, monkeypatch):
    monkeypatch.setattr("upstream.pushes.runner.send.MAX_ITEM_ATTEMPTS", 1)
    mirror.faults(
        {"kind": "drop", "operation": "invoice_status_update"},
        {"kind": "status", "status": 503, "operation": "invoice_list"},
    )
    job = queued_job(waiting(1), operator)

    bulk.run_job(job.pk)

    item = job.items.get()
    assert item.outcome == "in_doubt"
    assert "nothing was sent again" in item.message and "Retry failed items" in item.message
