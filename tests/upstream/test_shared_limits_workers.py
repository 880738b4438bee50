"""Two real worker processes share Paynet's cap (decision 018): a sync-like read nobody launched
and a staff bulk push, run together, never have more than PAYNET_CONCURRENCY requests in flight
at the sandbox (its own count says so); the push takes the slots from the read within a check;
a killed worker's slots come back when its lease runs out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk, subscription_refresh_start
from subscriptions.sync import paynet_sync
from tests.conftest import worker_env
from upstream.calls.slots import CHECK_EVERY, PRIORITY_BACKGROUND, PRIORITY_PUSH
from upstream.models import Job, UpstreamSlotLease

ROOT = Path(__file__).resolve().parents[2]
CAP = 4
LEASE_SECONDS = 3


@pytest.fixture
def world(transactional_db, sandbox, operator, settings):
    """A Paynet of 240 subscriptions mirrored; jobs queued in the database for real workers."""
    settings.APPROVAL_MIN_ITEMS = 10_000
    settings.APPROVAL_MIN_AMOUNT = 10**9
    sandbox.command("paynet", command="seed_bulk", subscriptions=200, records_per_subscription=1)
    paynet_sync()
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    return sandbox


def env_for(sandbox) -> dict[str, str]:
    return worker_env(
        sandbox.url,
        JOBS_LEASE_SECONDS=str(LEASE_SECONDS),
        JOBS_CHUNK_SIZE="8",
        PAYNET_CONCURRENCY=str(CAP),
        SYNC_INTERVAL_SECONDS="0",
    )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
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


def stop(*workers: subprocess.Popen) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def wait_for(predicate, timeout: float, what: str, every: float = 0.05) -> float:
    """Poll until `predicate()`; return the time.monotonic() it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def background_refresh(operator) -> Job:
    """A read of every subscription nobody launched: what a periodic sync job is."""
    job = subscription_refresh_start(subscriptions=Subscription.objects.all(), actor=operator)
    Job.objects.filter(pk=job.pk).update(created_by=None)
    return job


def staff_push(operator, n: int = 60) -> Job:
    ids = SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING).order_by("pk")
    records = SubscriptionInvoice.objects.filter(pk__in=list(ids.values_list("pk", flat=True)[:n]))
    return subscription_invoice_set_status_bulk(
        records=records, status=InvoiceStatus.CANCEL, actor=operator, reason="test"
    )


def grant(job: Job) -> int | None:
    row = UpstreamSlotLease.objects.filter(job=job).values_list("granted", flat=True).first()
    return row


def finished(job: Job) -> bool:
    return Job.objects.get(pk=job.pk).is_finished


def test_a_sync_and_a_bulk_push_on_two_workers_never_exceed_the_cap_and_the_push_goes_first(
    world, operator, tmp_path
):
    sandbox = world
    sandbox.latency(40)
    env = env_for(sandbox)
    refresh = background_refresh(operator)  # 240 subscriptions: about 500 reads
    first = start_worker(env, tmp_path / "worker1.log")
    second = None
    try:
        wait_for(lambda: grant(refresh) == CAP, 60, "the sync to hold every slot")
        assert UpstreamSlotLease.objects.get(job=refresh).priority == PRIORITY_BACKGROUND

        push = staff_push(operator)
        second = start_worker(env, tmp_path / "worker2.log")
        asked = wait_for(lambda: grant(push) is not None, 60, "the push to ask for slots")
        got = wait_for(lambda: (grant(push) or 0) > 0, 10, "the push to get slots")
        # Within one check of the sync's (plus the requests it had in flight).
        assert got - asked <= CHECK_EVERY + 1.5
        assert UpstreamSlotLease.objects.get(job=push).priority == PRIORITY_PUSH

        wait_for(lambda: finished(push), 60, "the push to finish")
        assert not finished(refresh), "the sync waited while the push had the slots"
        wait_for(lambda: finished(refresh), 120, "the sync to finish", every=0.2)
    finally:
        stop(first, *([second] if second else []))

    logs = "".join(p.read_text()[-1500:] for p in tmp_path.glob("worker*.log"))
    push.refresh_from_db()
    refresh.refresh_from_db()
    assert (push.state, push.succeeded) == (Job.State.SUCCEEDED, 60), logs
    assert refresh.state == Job.State.SUCCEEDED and refresh.succeeded == refresh.total, logs
    assert push.started_at < refresh.finished_at and refresh.started_at < push.finished_at
    inflight = sandbox.inflight("paynet")
    assert inflight["max"] == CAP, f"at most the cap in flight, and the cap used: {inflight}"
    assert UpstreamSlotLease.objects.count() == 0


def test_a_killed_workers_slots_come_back_when_its_lease_runs_out(world, operator, tmp_path):
    sandbox = world
    sandbox.latency(40)
    env = env_for(sandbox)
    refresh = background_refresh(operator)
    first = start_worker(env, tmp_path / "worker1.log")
    second = None
    try:
        wait_for(lambda: grant(refresh) == CAP, 60, "the first worker to hold every slot")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        dead = UpstreamSlotLease.objects.get(job=refresh)
        push = staff_push(operator, n=20)
        second = start_worker(env, tmp_path / "worker2.log")
        wait_for(lambda: grant(push) is not None, 60, "the push to ask for slots")
        wait_for(lambda: (grant(push) or 0) > 0, LEASE_SECONDS + 10, "the dead worker's slots")
        got_at = time.time()
        wait_for(lambda: finished(push), 60, "the push to finish")
    finally:
        stop(first, *([second] if second else []))

    push.refresh_from_db()
    assert (push.state, push.succeeded) == (Job.State.SUCCEEDED, 20)
    # Not before the dead worker's lease ran out (it was never given back), and then at once.
    assert got_at >= dead.expires_at.timestamp() - 0.05
    assert got_at <= dead.expires_at.timestamp() + 3
    assert not UpstreamSlotLease.objects.filter(holder=dead.holder).exists()
    assert sandbox.inflight("paynet")["max"] <= CAP
