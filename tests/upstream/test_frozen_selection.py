"""A bulk launch freezes its selection in a few statements; the worker writes the items later.

Real HTTP against the sandbox; its ledger says what reached Paynet.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.pushes import statuses_fingerprint, statuses_fingerprint_sql
from subscriptions.services import (
    subscription_invoice_set_status_bulk,
    subscription_set_status_all,
    subscription_status_all_preview,
)
from subscriptions.sync import paynet_sync
from upstream.models import Job, JobItem
from upstream.pushes import bulk, runner
from upstream.pushes.jobs import job_cancel

INVOICES = reverse("admin:subscriptions_subscriptioninvoice_changelist")


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """Jobs created here wait in the queue: each test runs them itself."""


def waiting(n: int):
    ids = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:n]
    return SubscriptionInvoice.objects.filter(pk__in=list(ids.values_list("pk", flat=True)))


def launch(records, operator, status=S.CANCEL) -> Job:
    return subscription_invoice_set_status_bulk(
        records=records, status=status, actor=operator, reason="frozen"
    )


def status_writes(sandbox) -> list[str]:
    return [e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]


def test_the_launch_writes_no_item_and_freezes_only_records_that_would_change(mirror, operator):
    changeable = list(waiting(4))
    final = SubscriptionInvoice.objects.filter(status=S.DONE_SUCCEED).order_by("pk")[:2]
    selected = SubscriptionInvoice.objects.filter(
        pk__in=[r.pk for r in changeable] + [r.pk for r in final]
    )

    job = launch(selected, operator)

    assert job.total == 4 and job.prepared == 0
    assert not JobItem.objects.filter(job=job).exists()
    frozen = bulk.parse(Job.objects.only("selection").get(pk=job.pk).selection)
    assert frozen == sorted((r.pk, str(S.WAITING.value)) for r in changeable)
    assert "4" in job.title


def test_the_launch_takes_the_same_statements_for_3_and_for_40_records(mirror, operator):
    counts = []
    operator.has_perm("subscriptions.push_invoice_status")  # the permission cache, read once
    for n in (3, 40):
        records = waiting(n)
        assert records.count() == n
        with CaptureQueriesContext(connection) as queries:
            launch(records, operator)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_worker_writes_the_items_in_chunks_then_sends_each_once(mirror, operator):
    records = list(waiting(5))
    job = launch(SubscriptionInvoice.objects.filter(pk__in=[r.pk for r in records]), operator)

    with mock.patch.object(bulk, "EXPAND_CHUNK", 2):
        bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.succeeded == 5 and job.prepared == 5
    items = list(job.items.order_by("position").values_list("position", "target_id", "payload"))
    assert [p for p, _t, _pl in items] == [1, 2, 3, 4, 5]
    assert [int(t) for _p, t, _pl in items] == sorted(r.pk for r in records)
    assert all(pl["from_status"] == S.WAITING and pl["status"] == S.CANCEL for *_x, pl in items)
    assert sorted(status_writes(mirror)) == sorted(r.invoice_no for r in records)


def test_the_first_items_are_sent_while_the_rest_are_written(mirror, operator):
    records = list(waiting(10))
    job = launch(SubscriptionInvoice.objects.filter(pk__in=[r.pk for r in records]), operator)
    handed_out_before_step = []
    real_step = bulk.Preparer.step

    def step(self):
        handed_out_before_step.append(
            JobItem.objects.filter(job=job).exclude(state=JobItem.State.PENDING).count()
        )
        return real_step(self)

    with (
        mock.patch.object(bulk, "EXPAND_CHUNK", 2),
        mock.patch.object(bulk.Preparer, "step", step),
    ):
        bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.succeeded == 10 and job.prepared == 10
    assert len(handed_out_before_step) == 5, "five chunks of two"
    assert handed_out_before_step[0] == 0, "nothing goes before the first items are written"
    assert handed_out_before_step[-1] > 0, "the first items were out before the last were written"
    assert sorted(status_writes(mirror)) == sorted(r.invoice_no for r in records)


def test_a_crash_while_preparing_resumes_where_it_stopped_without_duplicates(mirror, operator):
    job = launch(waiting(5), operator)
    real = bulk.insert_rows
    calls = {"n": 0}

    def crash_on_second_chunk(objs, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(objs, **kwargs)

    with (
        mock.patch.object(bulk, "insert_rows", crash_on_second_chunk),
        pytest.raises(RuntimeError),
    ):
        bulk.prepare_job(job.pk, chunk=2)
    job.refresh_from_db()
    assert job.prepared == 2 and job.items.count() == 2  # the failed chunk rolled back whole
    assert not runner.job_finalize(job.pk), "a job still preparing is never closed"

    bulk.prepare_job(job.pk, chunk=2)

    job.refresh_from_db()
    assert job.prepared == 5
    assert sorted(job.items.values_list("position", flat=True)) == [1, 2, 3, 4, 5]


def test_a_worker_that_read_a_stale_position_writes_nothing_twice(mirror, operator):
    job = launch(waiting(6), operator)
    bulk.prepare_job(job.pk, chunk=3)  # another worker wrote every chunk meanwhile
    reads = iter([(0, False)])
    real = bulk._progress

    with mock.patch.object(bulk, "_progress", lambda pk: next(reads, None) or real(pk)):
        written = bulk.prepare_job(job.pk, chunk=3)

    assert written == 0
    assert sorted(job.items.values_list("position", flat=True)) == [1, 2, 3, 4, 5, 6]


def test_records_created_after_the_launch_are_not_in_the_job(mirror, operator):
    selected = SubscriptionInvoice.objects.filter(status=S.WAITING)
    before = set(selected.values_list("pk", flat=True))
    job = launch(selected, operator)
    template = SubscriptionInvoice.objects.filter(status=S.WAITING).first()
    later = SubscriptionInvoice.objects.create(
        subscription=template.subscription,
        invoice_id="new-after-launch",
        invoice_no="NEW-1",
        amount=10,
        status=S.WAITING,
    )

    bulk.prepare_job(job.pk)

    targets = {int(t) for t in job.items.values_list("target_id", flat=True)}
    assert targets == before and later.pk not in targets


def test_a_record_changed_or_deleted_after_the_launch_is_skipped_not_sent(mirror, operator):
    moved, deleted, *rest = list(waiting(4))
    job = launch(
        SubscriptionInvoice.objects.filter(pk__in=[moved.pk, deleted.pk, *[r.pk for r in rest]]),
        operator,
    )
    SubscriptionInvoice.objects.filter(pk=moved.pk).update(status=S.EXTERNAL_CHARGED)
    SubscriptionInvoice.objects.filter(pk=deleted.pk).delete()

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.skipped == 2 and job.succeeded == 2
    skipped = dict(job.items.filter(outcome="skipped").values_list("target_id", "message"))
    assert "changed since the preview" in skipped[str(moved.pk)]
    assert "no longer in the mirror" in skipped[str(deleted.pk)]
    assert sorted(status_writes(mirror)) == sorted(r.invoice_no for r in rest)


def test_cancel_before_the_worker_started_cancels_every_entry_and_sends_nothing(mirror, operator):
    job = launch(waiting(3), operator)

    job = job_cancel(job=job, actor=operator)

    assert job.state == Job.State.CANCELLED and job.cancelled == 3 and job.prepared == 3
    assert set(job.items.values_list("outcome", flat=True)) == {"cancelled"}
    bulk.run_job(job.pk)
    assert status_writes(mirror) == []


def test_the_sweep_requeues_a_job_that_died_preparing_instead_of_closing_it(
    mirror, operator, queued_tasks, settings, django_capture_on_commit_callbacks
):
    job = launch(waiting(3), operator)
    bulk.prepare_job(job.pk, chunk=1)
    JobItem.objects.filter(job=job, position__gt=1).delete()  # died after its first chunk
    stale = timezone.now() - timedelta(seconds=settings.JOBS_LEASE_SECONDS + 5)
    Job.objects.filter(pk=job.pk).update(state=Job.State.PREPARING, prepared=1, heartbeat_at=stale)
    JobItem.objects.filter(job=job).update(state="done", outcome="ok")  # nothing pending

    with django_capture_on_commit_callbacks(execute=True):
        assert runner.sweep()["requeued"] == 1

    job.refresh_from_db()
    assert job.state == Job.State.PREPARING, "not closed as a success with one item of three"
    assert [t.args[0] for t in queued_tasks if t.task.name == "job_run"] == [job.pk]
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.prepared == 3 and job.items.count() == 3


def test_the_job_page_says_preparing_while_items_are_written(mirror, operator, operator_client):
    job = launch(waiting(3), operator)
    Job.objects.filter(pk=job.pk).update(state=Job.State.PREPARING)
    url = reverse("admin:upstream_job_change", args=[job.pk])

    page = operator_client.get(url).content.decode()
    progress = operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk])).json()

    assert 'id="job-preparing" class="help">' in page or 'id="job-preparing" class="help"\n' in page
    assert progress["state"] == "preparing" and progress["prepared"] == 0
    assert progress["preparing"] is True
    # Running, its first items out while the rest are written: still said.
    bulk.prepare_job(job.pk, chunk=1)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, prepared=1)
    progress = operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk])).json()
    assert progress["preparing"] is True
    assert 'job-preparing" class="help" hidden' not in operator_client.get(url).content.decode()
    Job.objects.filter(pk=job.pk).update(prepared=job.total)
    assert 'job-preparing" class="help" hidden' in operator_client.get(url).content.decode()
    progress = operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk])).json()
    assert progress["preparing"] is False


def test_status_of_all_records_freezes_each_subscriptions_records(mirror, operator):
    subscription = Subscription.objects.filter(invoices__status=S.WAITING).first()
    job = subscription_set_status_all(
        subscriptions=Subscription.objects.filter(pk=subscription.pk),
        status=S.CANCEL,
        actor=operator,
        reason="all",
    )
    # A record of it changes after the launch and before the worker writes the item.
    record = subscription.invoices.filter(status=S.WAITING).first()
    SubscriptionInvoice.objects.filter(pk=record.pk).update(status=S.EXTERNAL_CHARGED)

    bulk.run_job(job.pk)

    item = job.items.get()
    assert item.outcome == "skipped" and "changed since the preview" in item.message
    assert mirror.ledger("paynet", "invoices_status_update_all") == []


def test_the_statuses_fingerprint_is_the_same_in_sql_and_in_python(mirror):
    rows = Subscription.objects.annotate(fp=statuses_fingerprint_sql()).values_list("pk", "fp")
    for pk, fp in rows[:20]:
        pairs = list(
            SubscriptionInvoice.objects.filter(subscription_id=pk).values_list("pk", "status")
        )
        assert fp == statuses_fingerprint(pairs)
    empty = Subscription.objects.create(subscription_id="no-records", reference_no="x")
    assert Subscription.objects.annotate(fp=statuses_fingerprint_sql()).get(pk=empty.pk).fp == (
        statuses_fingerprint([])
    )


def test_any_one_status_change_moves_the_fingerprint():
    base = [(11, 0), (12, 0), (13, 4)]
    for i in range(3):
        for status in (0, 2, 3, 4, 5, 6):
            changed = list(base)
            changed[i] = (base[i][0], status)
            if status != base[i][1]:
                assert statuses_fingerprint(changed) != statuses_fingerprint(base)


def test_two_changes_that_cancel_in_one_weighted_sum_still_move_the_fingerprint():
    # Record 1 (weight 2) goes up by 3 and record 2 (weight 3) down by 2: +6 - 6 in one sum.
    base = [(1, 0), (2, 3)]
    changed = [(1, 3), (2, 1)]
    first = lambda rows: sum(s * (pk % 9973 + 1) for pk, s in rows)  # noqa: E731
    assert first(changed) == first(base)
    assert statuses_fingerprint(changed) != statuses_fingerprint(base)


def test_a_fingerprint_stored_before_the_second_sum_is_matched_in_its_own_form():
    rows = [(11, 0), (12, 3)]
    old = f"2.{0 * 12 + 3 * 13}"
    assert statuses_fingerprint(rows, like=old) == old
    assert statuses_fingerprint([(11, 4), (12, 3)], like=old) != old
    assert statuses_fingerprint(rows).count(".") == 2


def test_a_worker_with_debug_on_keeps_no_query_log(mirror, operator, settings):
    settings.DEBUG = True
    job = launch(waiting(5), operator)
    connection.queries_log.clear()

    with mock.patch.object(bulk, "EXPAND_CHUNK", 2):
        bulk.run_job(job.pk)

    kept = len(connection.queries_log)
    assert Job.objects.get(pk=job.pk).succeeded == 5
    assert kept == 0


def test_a_record_created_after_the_preview_is_not_in_the_job(mirror, operator, operator_client):
    from tests.subscriptions.test_admin import action_post, post_back

    url = f"{INVOICES}?status__exact=0"
    waiting_before = set(
        SubscriptionInvoice.objects.filter(status=S.WAITING).values_list("pk", flat=True)
    )
    on_page = [obj.pk for obj in operator_client.get(url).context["cl"].result_list]
    first = operator_client.post(url, action_post(on_page, select_across="1"))
    preview = post_back(operator_client, url, first, "status-confirm", step="preview", status=5)
    assert preview.context["preview"].upto == max(waiting_before)
    template = SubscriptionInvoice.objects.get(pk=on_page[0])
    later = SubscriptionInvoice.objects.create(
        subscription=template.subscription,
        invoice_id="after-preview",
        invoice_no="AFTER-1",
        amount=10,
        status=S.WAITING,
    )

    done = post_back(operator_client, url, preview, "status-confirm", step="confirm", reason="r")

    assert done.status_code == 302
    job = Job.objects.get()
    assert job.total == len(waiting_before)
    frozen = {pk for pk, _tag in bulk.parse(Job.objects.only("selection").get().selection)}
    assert frozen == waiting_before and later.pk not in frozen


def test_status_of_all_records_leaves_out_subscriptions_newer_than_the_preview(mirror, operator):
    subs = Subscription.objects.filter(invoices__status=S.WAITING).distinct().order_by("pk")
    first, second = list(subs[:2])
    selected = Subscription.objects.filter(pk__in=[first.pk, second.pk])
    preview = subscription_status_all_preview(subscriptions=selected, status=S.CANCEL)
    assert preview.upto == second.pk

    job = subscription_set_status_all(
        subscriptions=selected, status=S.CANCEL, actor=operator, reason="r", upto=first.pk
    )

    assert [pk for pk, _t in bulk.parse(Job.objects.only("selection").get().selection)] == [
        first.pk
    ]
    assert job.total == 1
