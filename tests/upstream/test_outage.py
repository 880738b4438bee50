"""The back office heals itself after a database outage (decision 015).

Outages are real where it matters: a worker process on a private PostgreSQL cluster stopped
hard (`pg_ctl stop -m immediate`), never the shared server; the web answers are tested with the
test database's connection pointed where nothing answers (a closed port, a missing folder), so
the refusal is the driver's own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.db import connections
from django.db.utils import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tasks import TaskResultStatus

from bench._pgcluster import PrivateCluster, cluster_unavailable_reason, free_port
from tests.conftest import require_or_skip, require_postgres, worker_env
from upstream.liveness.database import database_unavailable
from upstream.models import Job, WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database_backend(settings):
    """Tasks in the test database, as `db_worker` runs them (no worker here unless started)."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.TASKS_BACKEND = "database"


@contextmanager
def database_away() -> Iterator[None]:
    """The test database's connection pointed where nothing answers: every query is refused by
    the driver itself, as while the server is down."""
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    else:
        connection.settings_dict["NAME"] = "/nonexistent-outage-folder/db.sqlite3"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def sweeps_waiting() -> int:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, task_path__endswith=".jobs_sweep"
    ).count()


def syncs_waiting() -> Counter:
    from django_tasks_db.models import DBTaskResult

    rows = DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, task_path__endswith=".upstream_sync_periodic"
    )
    return Counter(row.args_kwargs["kwargs"]["service"] for row in rows)


# --- telling an outage from a bug ------------------------------------------------------------


def test_a_refused_connection_is_an_outage_and_a_missing_table_is_not(transactional_db):
    with database_away(), pytest.raises(OperationalError) as refused:
        Job.objects.exists()
    assert database_unavailable(refused.value)
    with connections["default"].cursor() as cursor, pytest.raises(Exception) as bug:
        cursor.execute("SELECT * FROM no_such_table_here")
    assert not database_unavailable(bug.value)


# --- the web while the database is away ------------------------------------------------------


def test_healthz_answers_ok_with_the_database_up(transactional_db, client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "migrations": "ok"}


def test_healthz_answers_503_with_the_database_down(transactional_db):
    with database_away():
        response = Client(raise_request_exception=False).get("/healthz")
    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    assert response.json()["database"] == "unavailable"


def test_healthz_says_when_migrations_are_not_applied(transactional_db, client):
    import upstream.liveness.answers as answers

    answers._migrations_ok_at = None
    with mock.patch.object(answers, "unapplied_migrations", return_value=["upstream.9999_x"]):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "migrations": "pending",
        "unapplied": 1,
    }


def test_the_api_answers_503_with_retry_after_during_an_outage(transactional_db, operator):
    from rest_framework.test import APIClient

    token_client = APIClient(raise_request_exception=False)
    token_client.force_authenticate(operator)
    session_client = Client(raise_request_exception=False)
    session_client.force_login(operator)
    with database_away():
        # The view's own query fails (DRF's handler) ...
        by_token = token_client.get("/api/jobs/")
        # ... or the session's, in a middleware before any view: the same answer.
        by_session = session_client.post(
            "/api/subscription-invoices/set-status/", {"ids": [1], "status": 5, "reason": "r"}
        )
    for response in (by_token, by_session):
        assert response.status_code == 503, response.content[:300]
        assert response["Content-Type"].startswith("application/json")
        assert response["Retry-After"] == "10"
        body = response.json()
        assert body["retry_after"] == 10
        assert "database is unavailable" in body["detail"]


def test_the_admin_shows_a_page_in_its_own_look_during_an_outage(transactional_db, operator):
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    with database_away():
        response = client.get(reverse("admin:upstream_job_changelist"))
    page = response.content.decode()
    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    assert 'id="database-unavailable"' in page and 'id="site-name"' in page  # the admin's frame
    assert "Traceback" not in page
    assert '<meta http-equiv="refresh" content="10">' in page  # a GET tries again by itself


# --- the periodic chains --------------------------------------------------------------------


def test_the_sweep_chain_is_restored_after_an_outage_and_never_doubled(
    transactional_db, database_backend, settings
):
    from upstream import tasks

    settings.SYNC_INTERVAL_SECONDS = 900
    tasks.ensure_periodic_chains()
    tasks.ensure_periodic_chains()  # a second worker starting: nothing more
    assert sweeps_waiting() == 1
    assert syncs_waiting() == Counter({"paynet": 1, "wisecp": 1, "payofin": 1})

    # The outage: the waiting sweep runs while every query for its next run is refused, so the
    # chain ends with it (as it did before this issue).
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(task_path__endswith=".jobs_sweep").delete()
    refused = OperationalError("unable to open database file")
    with mock.patch.object(tasks, "_sweep_waiting", side_effect=refused):
        tasks.jobs_sweep.call(reschedule=True)
    assert sweeps_waiting() == 0

    # The next periodic sync (or a worker's start, below) puts it back, once.
    with mock.patch("upstream.history.sync.upstream_sync", return_value=mock.Mock()):
        tasks.upstream_sync_periodic.call(service="paynet")
    assert sweeps_waiting() == 1
    tasks.jobs_sweep.call(reschedule=True)  # a sweep of the chain queues its next: still one
    assert sweeps_waiting() == 1
    assert syncs_waiting() == Counter({"paynet": 1, "wisecp": 1, "payofin": 1})


def test_jobs_sweep_schedule_twice_starts_one_chain(transactional_db, database_backend):
    from django.core.management import call_command

    call_command("jobs_sweep", schedule=True)
    call_command("jobs_sweep", schedule=True)
    assert sweeps_waiting() == 1


def test_a_worker_refused_by_the_database_waits_and_puts_the_chains_back(
    transactional_db, database_backend, settings
):
    """In-process: the worker's first claims are refused (the library's worker raised out of its
    loop there); it waits, then runs what waits, with one sweep chain."""
    from django_tasks_db.models import DBTaskResultQuerySet

    from upstream.liveness import worker as worker_module
    from upstream.liveness.heartbeat import Heartbeat
    from upstream.liveness.worker import ResilientWorker

    settings.SYNC_INTERVAL_SECONDS = 0
    settings.WORKER_DB_BACKOFF_CAP = 0.05
    real_get_locked = DBTaskResultQuerySet.get_locked
    refusals = iter([True, True])

    def get_locked(self):
        if next(refusals, False):
            raise OperationalError("unable to open database file")  # what SQLite says
        return real_get_locked(self)

    probes = iter([False, True])
    worker = ResilientWorker(
        heartbeat=Heartbeat("test-host:1:outage"),
        queue_names=["default"],
        interval=0.01,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=1,
        worker_id="test-host:1:outage",
        excluded_queue_names=[],
    )
    with (
        mock.patch.object(DBTaskResultQuerySet, "get_locked", get_locked),
        mock.patch.object(worker_module, "database_reachable", lambda: next(probes, True)),
        mock.patch.object(worker_module, "FIRST_WAIT", 0.01),
    ):
        worker.run()  # runs the sweep it put back (due in a second), then stops: max_tasks=1

    assert worker.outages == 2
    assert sweeps_waiting() == 1  # the sweep it put back ran and queued its next: one chain
    beat = WorkerHeartbeat.objects.get(worker_id="test-host:1:outage")
    assert beat.reconnects == 2


# --- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_warns_when_no_worker_is_seen_and_jobs_wait(
    db, database_backend, admin_client, operator
):
    Job.objects.create(kind="paynet.invoice_status", title="t", created_by=operator, total=3)
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="workers-warning"' in page
    assert "No task worker has been seen." in page
    assert "1 job(s) are waiting and will not run until a worker is started." in page
    assert "dash-workers-urgent" in page


def test_the_dashboard_says_when_each_worker_was_last_seen(db, database_backend, admin_client):
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id="host-a:10:x", hostname="host-a", pid=10, started_at=now, seen_at=now
    )
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "host-a #10" in page and "last seen" in page
    assert 'id="workers-warning"' not in page

    # Ten minutes of silence: said, but not urgent while nothing waits.
    WorkerHeartbeat.objects.update(seen_at=now - timedelta(minutes=10))
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "No task worker has been seen for 10" in page
    assert "dash-workers-urgent" not in page and "dash-workers-warning" in page


# --- liveness for an orchestrator --------------------------------------------------------------


def test_worker_alive_reads_the_heartbeat_file_and_the_heartbeats(db, tmp_path, settings):
    from django.core.management import call_command

    settings.TASKS_BACKEND = "database"
    beat = tmp_path / "worker.alive"
    beat.touch()
    call_command("worker_alive", heartbeat_file=beat, max_age=30)
    os.utime(beat, (time.time() - 120, time.time() - 120))
    with pytest.raises(SystemExit) as stale:
        call_command("worker_alive", heartbeat_file=beat, max_age=30)
    assert stale.value.code == 1

    with pytest.raises(SystemExit):
        call_command("worker_alive", any_host=True)
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id="h:1:a", hostname="h", pid=1, started_at=now, seen_at=now
    )
    call_command("worker_alive", worker_id="h:1:a")


# --- a real worker, a real outage --------------------------------------------------------------

SETUP = """
from django.contrib.auth import get_user_model
from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import paynet_sync
paynet_sync()
actor = get_user_model().objects.create_superuser("outage", password=None)
ids = list(SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
           .order_by("pk").values_list("pk", flat=True)[:60])
job = subscription_invoice_set_status_bulk(records=SubscriptionInvoice.objects.filter(pk__in=ids),
    status=InvoiceStatus.CANCEL, actor=actor, reason="outage")
print(job.pk)
"""


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, connect_timeout=2) as conn:
        return conn.execute(sql).fetchall()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may still be coming back
            if predicate():
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.postgres
def test_a_worker_that_loses_its_database_comes_back_and_finishes_its_job(
    transactional_db, sandbox, tmp_path
):
    require_postgres()
    reason = cluster_unavailable_reason()
    require_or_skip(not reason, f"a private PostgreSQL cluster ({reason or 'ok'})")
    cluster = PrivateCluster().init()
    worker = None
    try:
        url = cluster.create_database("outage")
        env = worker_env(
            sandbox.url,
            DATABASE_URL=url,
            JOBS_LEASE_SECONDS="3",
            JOBS_CHUNK_SIZE="4",
            PAYNET_CONCURRENCY="2",
            WORKER_DB_BACKOFF_CAP="1",
            WORKER_HEARTBEAT_SECONDS="1",
            SYNC_INTERVAL_SECONDS="0",
            APPROVAL_MIN_ITEMS="100000",
        )
        for args in (["migrate", "-v0"], ["shell", "-c", SETUP]):
            done = subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr[-2000:]
        job_id = int(done.stdout.strip().splitlines()[-1])
        sandbox.latency(60)
        log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--no-reload", "--interval", "0.1"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        job_row = f"SELECT state, succeeded, failed FROM upstream_job WHERE id = {job_id:d}"  # noqa: S608
        _wait(lambda: _query(url, job_row)[0][1] >= 8, 60, "the worker to push some records")

        cluster.stop_hard()
        time.sleep(4)
        assert worker.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"
        cluster.start()

        _wait(lambda: _query(url, job_row)[0][0] == "succeeded", 90, "the job to finish")
        assert worker.poll() is None, log.read_text()[-3000:]
        _state, succeeded, failed = _query(url, job_row)[0]
        assert (succeeded, failed) == (60, 0)
        writes = Counter(
            e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")
        )
        assert len(writes) == 60 and set(writes.values()) == {1}, "each record written once"
        (reconnects,) = _query(url, "SELECT max(reconnects) FROM upstream_workerheartbeat")[0]
        assert reconnects >= 1
        sweeps = _query(
            url,
            "SELECT count(*) FROM django_tasks_database_dbtaskresult "
            "WHERE status = 'READY' AND task_path LIKE '%.jobs_sweep'",
        )[0][0]
        assert sweeps == 1, "one sweep chain, put back after the outage"
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.destroy()
