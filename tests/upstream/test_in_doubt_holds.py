"""In doubt until settled: a write that may have reached the upstream keeps its record until a
read-back settles it; no lease expiry frees it, a cancel does not close it unread, and a create
whose twin is unsettled is answered with that twin instead of being sent again.

Real HTTP against the sandbox; its ledger says what reached the upstream. A web process "killed"
mid-request is simulated by a BaseException raised right after the request left (nothing of
ours runs after it, as after a SIGKILL).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone

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
from tests.subscriptions.helpers import a_record, a_subscription
from upstream.calls.errors import PushConflict
from upstream.models import Job, JobItem, RecordClaim, UpstreamCall
from upstream.pushes import bulk, runner, single
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_retry_failed
from upstream.pushes.kinds import WorkResult, kind_for
from upstream.pushes.runner import send

VAL_DATE = timezone.now() + timedelta(days=40)


@pytest.fixture
def mirror(sandbox, db, monkeypatch):
    paynet_sync()
    monkeypatch.setattr(send, "IN_DOUBT_PAUSE", timedelta(0))
    return sandbox


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """A job created here is queued and never runs by itself: each test decides who runs it."""


class Killed(BaseException):
    """The web process dies: no `except Exception`, no `finally` of ours matters after it."""


def killed_after_sending(operation: str):
    original = getattr(PaynetClient, operation)

    def send_then_die(self, **kwargs):
        original(self, **kwargs)
        raise Killed

    return mock.patch.object(PaynetClient, operation, send_then_die)


def the_lease_runs_out(job: Job, *, quiet_for: timedelta) -> None:
    """What time does to a killed single push: its lease and its claim's `until` pass, and its
    heartbeat stops (a live web process renews all three every few seconds)."""
    past = timezone.now() - timedelta(seconds=1)
    JobItem.objects.filter(job=job).update(lease_until=past)
    RecordClaim.objects.filter(job_item__job=job).update(until=past)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - quiet_for)


def create(subscription: Subscription, amount: Decimal, operator, **extra) -> SubscriptionInvoice:
    return subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=amount,
        actor=operator,
        reason="test",
        **extra,
    )


def creates(sandbox) -> list[dict]:
    return sandbox.ledger("paynet", "create_invoice")


def test_a_create_killed_mid_request_is_answered_with_itself_until_settled(mirror, operator):
    subscription = a_subscription(fixed=False)
    amount = Decimal("77.70")
    with killed_after_sending("create_invoice"), pytest.raises(Killed):
        create(subscription, amount, operator)
    first = Job.objects.get()
    assert len(creates(mirror)) == 1  # Paynet made it; we never heard

    # Sent again at once: the first still holds, and the answer names it.
    with pytest.raises(PushConflict) as info:
        create(subscription, amount, operator)
    assert info.value.job == first and f"#{first.pk}" in str(info.value)

    # After the web process's lease, before any sweep: still the first, even "create anyway".
    the_lease_runs_out(first, quiet_for=timedelta(seconds=30))
    for allow in (False, True):
        with pytest.raises(PushConflict) as info:
            create(subscription, amount, operator, allow_duplicate=allow)
        assert info.value.job == first
    assert len(creates(mirror)) == 1

    # The sweep puts it in doubt at once (no waiting for a worker's lease) and queues it; the
    # worker reads it back: created once, recorded as such.
    result = runner.sweep()
    assert (result["released"], result["requeued"]) == (1, 1)
    bulk.run_job(first.pk)
    item = first.items.get()
    assert (item.outcome, item.in_doubt) == ("ok", False), item.message
    assert "reading back" in item.message
    (made,) = creates(mirror)
    assert subscription.invoices.filter(invoice_no=made["invoice_no"]).count() == 1
    assert not RecordClaim.objects.exists()

    # Settled: the same create is now a duplicate of a known record, which staff may confirm.
    with pytest.raises(ValidationError) as refused:
        create(subscription, amount, operator)
    assert "allow_duplicate" in refused.value.message_dict
    create(subscription, amount, operator, allow_duplicate=True)
    assert len(creates(mirror)) == 2


def test_a_create_of_another_amount_is_no_twin_of_an_unsettled_one(mirror, operator):
    subscription = a_subscription(fixed=False)
    with killed_after_sending("create_invoice"), pytest.raises(Killed):
        create(subscription, Decimal("12.00"), operator)
    first = Job.objects.get()
    the_lease_runs_out(first, quiet_for=timedelta(seconds=30))
    runner.sweep()

    # Another amount is another record; it waits only for the subscription's claim.
    bulk.run_job(first.pk)
    record = create(subscription, Decimal("13.00"), operator)

    assert record.amount == Decimal("13.00")
    assert len(creates(mirror)) == 2


def test_a_status_all_job_waits_for_a_killed_single_push_to_be_read_back(mirror, operator):
    record = a_record(S.WAITING)
    with killed_after_sending("invoice_status_update"), pytest.raises(Killed):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    single = Job.objects.get()
    the_lease_runs_out(single, quiet_for=timedelta(seconds=30))

    everything = subscription_set_status_all(
        subscriptions=Subscription.objects.filter(pk=record.subscription_id),
        status=S.CANCEL,
        actor=operator,
        reason="test",
    )
    prepare_job(everything.pk)
    # The killed push's claim ran out in time, but its write may have landed: not taken.
    assert bulk.claim_items(everything, "worker-b", 10) == []
    waiting = everything.items.get()
    assert "another push" in waiting.message
    assert mirror.ledger("paynet", "invoices_status_update_all") == []

    runner.sweep()
    bulk.run_job(single.pk)

    item = single.items.get()
    assert (item.outcome, item.in_doubt) == ("ok", False)  # applied, not "not sent"
    assert "reading back" in item.message
    record.refresh_from_db()
    assert record.status == S.CANCEL
    (call,) = UpstreamCall.objects.filter(job=single, operation="invoice_status_update")
    assert call.job_item_id == item.pk


def test_a_push_left_in_doubt_keeps_its_record_until_a_read_back_settles_it(mirror, operator):
    record = a_record(S.WAITING)
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk=record.pk),
        status=S.CANCEL,
        actor=operator,
        reason="test",
    )
    prepare_job(job.pk)
    handler = kind_for(job.kind)
    (claimed,) = bulk.claim_items(job, "w", 1, handler)
    JobItem.objects.filter(pk=claimed.id).update(attempts=send.MAX_ITEM_ATTEMPTS - 1)
    # Its last read-back could not reach Paynet: reported in doubt, nothing sent.
    send.flush_results(
        job, handler, "w", [WorkResult(claimed, JobItem.Outcome.IN_DOUBT, message="timeout")]
    )
    runner.job_finalize(job.pk)
    job.refresh_from_db()
    item = job.items.get()
    assert (item.state, item.outcome, item.in_doubt) == ("done", "in_doubt", True)
    assert "no other change of this record is sent" in item.message

    # Long after every lease: the record is still held, so no push races the unknown write.
    RecordClaim.objects.update(until=timezone.now() - timedelta(days=1))
    with pytest.raises(PushConflict) as info:
        subscription_invoice_set_status(
            record=record, status=S.EXTERNAL_CHARGED, actor=operator, reason="test"
        )
    assert f"job #{job.pk}" in str(info.value) and "reading back" in str(info.value)

    job_retry_failed(job=job, actor=operator)
    bulk.run_job(job.pk)  # reads back: not there, so sent now, once

    item.refresh_from_db()
    assert (item.outcome, item.in_doubt) == ("ok", False)
    assert len(mirror.ledger("paynet", "invoice_status_update")) == 1
    assert not RecordClaim.objects.exists()
    subscription_invoice_set_status(
        record=record, status=S.EXTERNAL_CHARGED, actor=operator, reason="x"
    )


def test_a_cancel_reads_items_in_doubt_back_instead_of_closing_them(mirror, operator):
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:3])
    landed, lost, untouched = records
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk__in=[r.pk for r in records]),
        status=S.CANCEL,
        actor=operator,
        reason="test",
    )
    prepare_job(job.pk)
    target_type = kind_for(job.kind).target_type
    # Two writes went out unanswered before the cancel; only the first reached Paynet.
    for r in (landed, lost):
        item = job.items.get(target_id=str(r.pk))
        JobItem.objects.filter(pk=item.pk).update(in_doubt=True)
        RecordClaim.objects.create(
            target_type=target_type,
            target_id=str(r.pk),
            holder=runner.item_holder(item.pk),
            job_item=item,
            until=timezone.now() - timedelta(hours=1),
        )
    mirror.command("paynet", command="set_status", invoice_no=landed.invoice_no, status=S.CANCEL)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)

    bulk.run_job(job.pk)

    outcomes = {int(i.target_id): (i.outcome, i.in_doubt) for i in job.items.all()}
    assert outcomes == {
        landed.pk: ("ok", False),  # it was applied: recorded so, and mirrored
        lost.pk: ("cancelled", False),  # read back, not there: not sent after the cancel
        untouched.pk: ("cancelled", False),
    }
    assert "Read back after the cancel" in job.items.get(target_id=str(lost.pk)).message
    assert mirror.ledger("paynet", "invoice_status_update") == []
    landed.refresh_from_db()
    assert landed.status == S.CANCEL
    job.refresh_from_db()
    assert job.state == "cancelled" and (job.succeeded, job.cancelled) == (1, 2)
    assert not RecordClaim.objects.exists()


def test_a_cancel_before_the_worker_ran_leaves_items_in_doubt_to_be_read_back(mirror, operator):
    record = a_record(S.WAITING)
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk=record.pk),
        status=S.CANCEL,
        actor=operator,
        reason="test",
    )
    prepare_job(job.pk)
    JobItem.objects.filter(job=job).update(in_doubt=True)

    runner.cancel_pending_items(job)

    item = job.items.get()
    assert (item.state, item.in_doubt) == ("pending", True)


@pytest.mark.django_db(transaction=True)
def test_a_single_push_renews_its_short_lease_while_the_upstream_is_slow(
    sandbox, operator, monkeypatch, queued_tasks
):
    # The web lease is short so that a killed web process is noticed by the next sweep; a live
    # one keeps it from a thread while its request waits on the upstream.
    paynet_sync()
    monkeypatch.setattr(single, "WEB_LEASE", timedelta(seconds=1))
    monkeypatch.setattr(single, "WEB_RENEW_EVERY", 0.2)
    sandbox.latency(1500)
    record = a_record(S.WAITING)
    seen: list = []
    done = threading.Event()

    def watch() -> None:
        try:
            while not done.is_set():
                seen.extend(
                    JobItem.objects.filter(state=JobItem.State.SENDING).values_list(
                        "lease_until", flat=True
                    )
                )
                time.sleep(0.1)
        finally:
            connections.close_all()

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = timezone.now()
    try:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    finally:
        done.set()
        watcher.join()
        sandbox.latency(0)

    assert Job.objects.get().state == "succeeded"
    # Leased for one second at the start, and still further ahead while the answer was awaited.
    assert seen and max(seen) > started + timedelta(seconds=1.5)
    assert not RecordClaim.objects.exists()


def test_the_sweep_leaves_a_live_single_push_alone(mirror, operator):
    record = a_record(S.WAITING)
    with killed_after_sending("invoice_status_update"), pytest.raises(Killed):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    job = Job.objects.get()
    # As a live web process keeps it: lease ahead, heartbeat fresh.
    result = runner.sweep()

    assert (result["released"], result["requeued"]) == (0, 0)
    assert job.items.get().state == "sending"


def test_a_create_left_in_doubt_is_a_twin_until_its_job_is_retried(mirror, operator):
    subscription = a_subscription(fixed=False)
    with killed_after_sending("create_invoice"), pytest.raises(Killed):
        create(subscription, Decimal("31.00"), operator)
    first = Job.objects.get()
    # Its read-backs could not reach Paynet: reported in doubt, nothing sent again.
    JobItem.objects.filter(job=first).update(
        state=JobItem.State.DONE, outcome=JobItem.Outcome.IN_DOUBT, in_doubt=True
    )

    with pytest.raises(PushConflict) as info:
        create(subscription, Decimal("31.00"), operator, allow_duplicate=True)

    assert info.value.job == first and "Retry failed items" in str(info.value)
    assert len(creates(mirror)) == 1
