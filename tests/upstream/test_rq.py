"""TASKS_BACKEND=rq: a job queued in Redis and run by a real `rqworker` process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import paynet_sync
from tests.conftest import require_or_skip, worker_env
from upstream.models import Job

ROOT = Path(__file__).resolve().parents[2]
# A database of its own on the shared Redis, emptied before the test.
REDIS_URL = "redis://127.0.0.1:6379/13"
RQ_WORKER = [
    sys.executable,
    "manage.py",
    "rqworker",
    "--burst",
    "--job-class",
    "django_tasks_rq.Job",
    "default",
]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.django_db(transaction=True)
def test_a_job_queued_in_redis_is_run_by_an_rq_worker(sandbox, operator, queued_tasks):
    require_or_skip(redis_reachable(), "Redis at 127.0.0.1:6379")
    paynet_sync()
    ids = list(
        SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
        .order_by("pk")
        .values_list("pk", flat=True)[:12]
    )
    records = SubscriptionInvoice.objects.filter(pk__in=ids)
    # Created here, queued only in the dummy backend: the job reaches Redis below.
    job = subscription_invoice_set_status_bulk(
        records=records, status=InvoiceStatus.CANCEL, actor=operator, reason="rq"
    )
    assert [t.args[0] for t in queued_tasks] == [job.pk]
    env = worker_env(sandbox.url, TASKS_BACKEND="rq", REDIS_URL=REDIS_URL)
    flushed = manage(
        env, "shell", "-c", "import django_rq; django_rq.get_connection('default').flushdb()"
    )
    assert flushed.returncode == 0, flushed.stderr

    queued = manage(
        env,
        "shell",
        "-c",
        f"from upstream.pushes.jobs import job_enqueue; from upstream.models import Job; "
        f"from django.db import transaction\n"
        f"with transaction.atomic(): job_enqueue(Job.objects.get(pk={job.pk}))",
    )
    assert queued.returncode == 0, queued.stderr
    job.refresh_from_db()
    assert job.task_id, "the task id from Redis is kept on the job"
    assert job.state == Job.State.QUEUED

    worked = manage(env, "rqworker", "--burst", "--job-class", "django_tasks_rq.Job", "default")
    assert worked.returncode == 0, worked.stdout + worked.stderr

    job.refresh_from_db()
    assert (job.state, job.succeeded) == (Job.State.SUCCEEDED, 12), worked.stderr[-2000:]
    writes = [e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]
    assert sorted(writes) == sorted(records.values_list("invoice_no", flat=True))
    assert set(records.values_list("status", flat=True)) == {InvoiceStatus.CANCEL}


@pytest.mark.django_db(transaction=True)
def test_a_cancel_stops_a_job_an_rq_worker_is_running(
    sandbox, operator, api_operator, queued_tasks, settings
):
    # The cancel's line under RQ as under the database backend (tests/upstream/test_cancel.py):
    # after the answer, only the requests already in flight complete.
    require_or_skip(redis_reachable(), "Redis at 127.0.0.1:6379")
    concurrency, records = 4, 40
    settings.APPROVAL_MIN_ITEMS = 1_000_000  # no second person: the cancel is under test
    settings.APPROVAL_MIN_AMOUNT = 10**12
    paynet_sync()
    ids = list(
        SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
        .order_by("pk")
        .values_list("pk", flat=True)[:records]
    )
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk__in=ids),
        status=InvoiceStatus.CANCEL,
        actor=operator,
        reason="rq cancel",
    )
    env = worker_env(
        sandbox.url, TASKS_BACKEND="rq", REDIS_URL=REDIS_URL, PAYNET_CONCURRENCY=str(concurrency)
    )
    flushed = manage(
        env, "shell", "-c", "import django_rq; django_rq.get_connection('default').flushdb()"
    )
    assert flushed.returncode == 0, flushed.stderr
    queued = manage(
        env,
        "shell",
        "-c",
        f"from upstream.pushes.jobs import job_enqueue; from upstream.models import Job; "
        f"from django.db import transaction\n"
        f"with transaction.atomic(): job_enqueue(Job.objects.get(pk={job.pk}))",
    )
    assert queued.returncode == 0, queued.stderr
    sandbox.latency(400)

    def writes() -> list[dict]:
        return sandbox.ledger("paynet", "invoice_status_update")

    worker = subprocess.Popen(
        RQ_WORKER,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(writes()) < 2 * concurrency and time.monotonic() < deadline:
            time.sleep(0.02)
        answer = api_operator.post(f"/api/jobs/{job.pk}/cancel/")
        answered_at = time.time()
        output, _ = worker.communicate(timeout=90)
    finally:
        if worker.poll() is None:
            worker.kill()
        sandbox.latency(0)
    assert answer.status_code == 200, answer.content

    ledger = writes()
    late = [e for e in ledger if e["at"] > answered_at]
    assert len(late) <= concurrency, "after the answer, only the requests in flight complete"
    assert 2 * concurrency <= len(ledger) < records, output[-2000:]
    job.refresh_from_db()
    assert (job.state, job.succeeded, job.cancelled) == (
        Job.State.CANCELLED,
        len(ledger),
        records - len(ledger),
    )
    assert answer.json()["not_sent"] == records - len(ledger)
