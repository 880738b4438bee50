"""The job runner: leases, in-doubt settling, cancel, retry, the sweep, a worker killed mid-job."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.utils import timezone
from django_tasks import TaskResultStatus

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import paynet_sync
from tests.conftest import require_postgres, worker_env
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes import bulk, runner
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_cancel, job_retry_failed

ROOT = Path(__file__).resolve().parents[2]


def waiting_records(n: int):
    ids = list(
        SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
        .order_by("pk")
        .values_list("pk", flat=True)[:n]
    )
    assert len(ids) == n
    return SubscriptionInvoice.objects.filter(pk__in=ids)


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """A job created here is queued and never runs by itself: each test decides who runs it."""


def queued_job(records, actor, status=InvoiceStatus.CANCEL) -> Job:
    """A bulk job with its items written (the worker would expand the selection first)."""
    job = subscription_invoice_set_status_bulk(
        records=records, status=status, actor=actor, reason="test"
    )
    prepare_job(job.pk)
    return job


def queued_job_ids(queued_tasks) -> list[int]:
    assert all(t.status == TaskResultStatus.READY for t in queued_tasks), "queued, not run"
    return [t.args[0] for t in queued_tasks if t.task.name == "job_run"]


def paynet_writes(sandbox) -> list[str]:
    return [e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()


def test_run_job_pushes_each_item_once_and_records_calls_in_bulk(sandbox, mirror, operator):
    records = waiting_records(30)
    job = queued_job(records, operator)

    counts = bulk.run_job(job.pk)

    job.refresh_from_db()
    assert counts == {"succeeded": 30, "failed": 0, "cancelled": 0}
    assert job.state == Job.State.SUCCEEDED and job.finished_at is not None
    assert sorted(paynet_writes(sandbox)) == sorted(records.values_list("invoice_no", flat=True))
    assert set(records.values_list("status", flat=True)) == {InvoiceStatus.CANCEL}
    calls = UpstreamCall.objects.filter(job=job)
    assert calls.count() == 30
    assert set(calls.values_list("outcome", flat=True)) == {"ok"}
    assert all(item.call_id and item.outcome == "ok" for item in job.items.all())
    assert calls.first().actor == operator


def test_expired_lease_is_read_back_before_anything_is_resent(sandbox, mirror, operator):
    records = waiting_records(6)
    job = queued_job(records, operator)
    # A worker claims three items, pushes one of them, and dies before writing anything.
    claimed = bulk.claim_items(job, "dead-worker", 3)
    landed = claimed[0]
    from subscriptions.client import PaynetClient

    PaynetClient().invoice_status_update(
        invoice_no=landed.payload["invoice_no"], status=InvoiceStatus.CANCEL
    )
    JobItem.objects.filter(claimed_by="dead-worker").update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    writes = paynet_writes(sandbox)
    assert sorted(writes) == sorted(records.values_list("invoice_no", flat=True))
    assert len(writes) == len(set(writes)), "a record was pushed twice"
    settled = job.items.get(pk=landed.id)
    assert "reading back" in settled.message
    assert settled.outcome == "ok"
    assert set(records.values_list("status", flat=True)) == {InvoiceStatus.CANCEL}


def test_unanswered_push_is_settled_by_reading_back(sandbox, mirror, operator, settings):
    records = waiting_records(4)
    target = records.first()
    sandbox.faults(
        {"kind": "drop", "apply": True, "match": {"invoice_no": target.invoice_no}, "times": 1}
    )
    job = queued_job(records, operator)

    with mock.patch("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0)):
        bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert paynet_writes(sandbox).count(target.invoice_no) == 1
    item = job.items.get(target_id=str(target.pk))
    assert item.outcome == "ok" and "reading back" in item.message
    outcomes = list(
        UpstreamCall.objects.filter(job_item=item)
        .order_by("id")
        .values_list("operation", "outcome")
    )
    assert outcomes[0] == ("invoice_status_update", "in_doubt")
    assert ("invoice_list", "ok") in outcomes


def test_rejected_items_fail_with_the_upstream_message_and_can_be_retried(
    sandbox, mirror, operator, queued_tasks, django_capture_on_commit_callbacks
):
    records = waiting_records(5)
    target = records.first()
    sandbox.faults(
        {"kind": "reject", "match": {"invoice_no": target.invoice_no}, "message": "Kayıt kilitli"}
    )
    job = queued_job(records, operator)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.succeeded, job.failed) == (Job.State.PARTIALLY_FAILED, 4, 1)
    failed = job.items.get(outcome="rejected")
    assert "Kayıt kilitli" in failed.message and failed.upstream_code == "1"
    target.refresh_from_db()
    assert target.status == InvoiceStatus.WAITING, "a rejected push must not change the mirror"

    sandbox.faults()
    with django_capture_on_commit_callbacks(execute=True):
        job_retry_failed(job=job, actor=operator)
    assert queued_job_ids(queued_tasks) == [job.pk]
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.succeeded, job.failed) == (Job.State.SUCCEEDED, 5, 0)
    target.refresh_from_db()
    assert target.status == InvoiceStatus.CANCEL


def test_cancel_before_start_sends_nothing(sandbox, mirror, operator):
    job = queued_job(waiting_records(5), operator)
    job_cancel(job=job, actor=operator)
    job.refresh_from_db()
    assert (job.state, job.cancelled) == (Job.State.CANCELLED, 5)
    assert bulk.run_job(job.pk)["succeeded"] == 0
    assert paynet_writes(sandbox) == []


def test_viewer_cannot_retry_or_cancel(sandbox, mirror, operator, viewer):
    job = queued_job(waiting_records(2), operator)
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        job_cancel(job=job, actor=viewer)
    with pytest.raises(PermissionDenied):
        job_retry_failed(job=job, actor=viewer)


def test_sweep_releases_expired_leases_and_requeues_a_silent_job(
    sandbox, mirror, operator, settings, queued_tasks, django_capture_on_commit_callbacks
):
    job = queued_job(waiting_records(3), operator)
    bulk.claim_items(job, "dead-worker", 3)
    stale = timezone.now() - timedelta(seconds=settings.JOBS_LEASE_SECONDS + 5)
    JobItem.objects.filter(job=job).update(lease_until=stale)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, heartbeat_at=stale)

    with django_capture_on_commit_callbacks(execute=True):
        result = runner.sweep()

    assert result == {
        "released": 3,
        "requeued": 1,
        "calls_settled": 0,
        "tasks_closed": 0,
        "approvals_expired": 0,
        "dashboard_totals": 1,
        "drift_reopened": 0,
        "slots_released": 0,
    }
    assert queued_job_ids(queued_tasks) == [job.pk]
    assert set(job.items.values_list("state", "in_doubt")) == {("pending", True)}


def test_sweep_leaves_a_live_job_alone(
    sandbox, mirror, operator, queued_tasks, django_capture_on_commit_callbacks
):
    job = queued_job(waiting_records(2), operator)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, heartbeat_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert runner.sweep() == {
            "released": 0,
            "requeued": 0,
            "calls_settled": 0,
            "tasks_closed": 0,
            "approvals_expired": 0,
            "dashboard_totals": 1,
            "drift_reopened": 0,
            "slots_released": 0,
        }
    assert queued_job_ids(queued_tasks) == []


# A real worker process, killed mid-job ---------------------------------------------------------


def _worker_env(sandbox) -> dict[str, str]:
    return worker_env(
        sandbox.url,
        JOBS_LEASE_SECONDS="3",
        JOBS_CHUNK_SIZE="8",
        PAYNET_CONCURRENCY="4",
    )


def _manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def _worker(env, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "db_worker",
            "--interval",
            "0.1",
            "--no-startup-delay",
            "--no-reload",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.postgres
def test_worker_killed_mid_job_resumes_without_pushing_any_record_twice(
    transactional_db, sandbox, operator, tmp_path, settings
):
    require_postgres()
    # 120 records: no second person in this test.
    settings.APPROVAL_MIN_ITEMS = 10_000
    settings.APPROVAL_MIN_AMOUNT = 10**9
    paynet_sync()
    sandbox.latency(50)
    records = waiting_records(120)
    job = queued_job(records, operator)
    env = _worker_env(sandbox)
    _manage(env, "shell", "-c", f"from upstream.tasks import job_run; job_run.enqueue({job.pk})")

    first = _worker(env, tmp_path / "worker1.log")
    try:
        _wait(lambda: len(paynet_writes(sandbox)) >= 30, 60, "the first worker to push")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    pushed_before_kill = len(paynet_writes(sandbox))
    job.refresh_from_db()
    assert not job.is_finished
    assert pushed_before_kill < 120

    time.sleep(3.5)  # the dead worker's lease expires
    swept = _manage(env, "jobs_sweep").stdout
    assert "re-queued 1 jobs" in swept, swept

    second = _worker(env, tmp_path / "worker2.log")
    try:
        _wait(lambda: Job.objects.get(pk=job.pk).is_finished, 90, "the second worker to finish")
    finally:
        second.terminate()
        second.wait(10)

    job.refresh_from_db()
    writes = paynet_writes(sandbox)
    assert job.state == Job.State.SUCCEEDED, (tmp_path / "worker2.log").read_text()[-2000:]
    assert job.succeeded == 120
    assert len(writes) == len(set(writes)) == 120, "a record was pushed twice or not at all"
    assert set(records.values_list("status", flat=True)) == {InvoiceStatus.CANCEL}
