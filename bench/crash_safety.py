"""Kill workers and web processes mid-push at random; prove every change landed exactly once.

    .venv/bin/python bench/crash_safety.py [--jobs 6] [--items 500] [--singles 12] [--seed 1]
        [--outages 3] [--outage-seconds 8] [--tasks-backend database|rq]

Runs on PostgreSQL: several real `manage.py db_worker` processes (or `rqworker`s with
`--tasks-backend rq`, on Redis database 12 of REDIS_URL's server, emptied first) work on jobs on
the same database, as in production. SQLite is not supported (several writer processes on one
SQLite file is not a deployment we run).

With `--outages N` (the default, 3, when PostgreSQL's server programs are installed) the bench
starts a private PostgreSQL cluster of its own (initdb into a temporary folder, a free port; as
the `postgres` user when run as root), and stops it hard (`pg_ctl stop -m immediate`) for
`--outage-seconds` N times while jobs are running, then starts it again; nobody restarts a
worker that exits by itself (`worker_self_exits`), the bench runs no sweep of its own (the
workers' periodic sweep must survive the outages) and the cluster is removed at the end. With
`--outages 0` the database named by BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/bench_crash) is dropped and recreated, and the bench sweeps
every 2 s itself as before.

What it does, against the sandbox in its own process at `--latency-ms 50`:

1. Seeds `jobs * items + singles` waiting Paynet payment records in the sandbox and syncs them.
   Creates `--jobs` status-change jobs of `--items` records each (alternately waiting -> cancelled
   and waiting -> not charged, so every item changes its record), queued for the task workers.
2. Runs `--workers` task worker processes (JOBS_LEASE_SECONDS=4, PAYNET_CONCURRENCY=4, chunks of
   16) and SIGKILLs a random live one every 0.5-2 s (at most `--worker-kills`), restarting it a
   moment later. `manage.py jobs_sweep` runs every 2 s (in this process) and the self-repeating
   sweep task is queued on the workers too (JOBS_SWEEP_INTERVAL_SECONDS=2).
3. Meanwhile `--singles` single pushes (`subscription_invoice_set_status`, status -> cancelled,
   the same service the admin form and `POST /api/subscription-invoices/{pk}/set-status/` call)
   each run in a child Python process with django.setup(). The sandbox holds that record's
   `invoice_status_update` for 1.5 s more (a latency fault); once the push's pending call row is
   committed, the child is SIGKILLed after a random 0-1.7 s: before the request reached the
   sandbox, while it waits there, or after the answer came but before it was written down.
4. Meanwhile `--creates` Paynet creates (`subscription_invoice_create`, the same amount and
   charge day each time) run the same way, each on a subscription of its own: SIGKILLed after
   their pending call row, then sent again at once by a new process (a person retrying with a
   fresh form), and again once the killed request's web lease has run out. Each must end with
   exactly one record at Paynet and in the mirror: the retries are answered with the first
   create while it is unsettled, and as a known duplicate once it is.
5. Runs until every job (the bulk ones and the single pushes' one-item jobs) is finished, then
   waits past the lease and sweeps once more so orphaned pending call rows are settled, stops
   the workers and checks every operation against the sandbox.

The figures, per operation (a job item, or a single push = the item of its one-item job; each
operation targets its own record, no record is targeted twice):

- kills: SIGKILLs sent to live processes (workers + single-push processes). A single-push
  process that had already exited when its kill was due is not counted.
- items: operations (job items + single pushes).
- applied_twice: operations whose record the sandbox ledger shows more than one accepted
  `invoice_status_update` for (any write of that record counts, including a resend of the status
  it already had: each operation must reach the upstream at most once); and killed creates the
  ledger shows more than one `create_invoice` of for their subscription.
- creates: killed creates (each retried twice); one of them made no record, or a mirror
  that differs from the sandbox, counts as lost.
- lost: operations that, once everything is terminal, are OK in our database while the
  sandbox's record is not in the target status; or whose change the sandbox has (its record is
  in the target status) while our item is not OK or our mirror's status differs from the
  sandbox's.
- unlogged_writes: writes the sandbox accepted that our call log cannot account for. Per record:
  max(0, ledger writes - call rows), where the call rows are the `invoice_status_update` rows
  for that record (target_id) in any outcome except `rejected` (a refusal writes nothing); plus
  every ledger write of a record no operation targeted.
- non_terminal: job items not DONE + jobs not finished (bulk and single-push) + call rows still
  `pending` after the final sweep.
- db_outages: times the private cluster was stopped hard and started again.

Exits 1 if applied_twice, lost, unlogged_writes or non_terminal is not 0 (or the run timed out).
Figures also go to bench/results/crash_safety-<time>.json.
Last line: kills=<n> items=<n> db_outages=<n> applied_twice=<n> lost=<n> unlogged_writes=<n>
non_terminal=<n>
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import free_port, fresh_postgres  # noqa: E402
from bench._pgcluster import PrivateCluster, cluster_unavailable_reason  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_crash"
LEASE_SECONDS = 4
SWEEP_EVERY = 2.0
SINGLE_EXTRA_LATENCY = 1.5  # seconds the sandbox holds a single push's write
# Every killed create asks for the same record (amount and charge day), on its own subscription.
CREATE_AMOUNT = "123.45"
CREATE_VAL_DATE = "2031-01-15T07:00:00+00:00"
CREATE_LATE_RETRY = 22.0  # seconds: past a single push's web lease (runner.leases.WEB_LEASE)
KILL_GAP = (0.5, 2.0)  # seconds between worker kills
RESTART_GAP = (0.2, 1.0)  # seconds before a killed worker is started again
MIN_WORKER_AGE = 1.5  # a worker is killed only once it had time to start and claim work
MIN_KILLS = 30  # fewer and the run says so
OUTAGE_GAP = (6.0, 12.0)  # seconds of work between two outages (the first: after the first)
RQ_REDIS_DB = 12
WORKER_ENV = {
    "TASKS_BACKEND": "database",
    "JOBS_LEASE_SECONDS": str(LEASE_SECONDS),
    "JOBS_CHUNK_SIZE": "16",
    "JOBS_SWEEP_INTERVAL_SECONDS": "2",
    "PAYNET_CONCURRENCY": "4",
    "UPSTREAM_CONNECT_TIMEOUT": "1",
    "UPSTREAM_READ_TIMEOUT": "4",
    "UPSTREAM_BACKOFF_BASE": "0.05",
    "UPSTREAM_BACKOFF_CAP": "0.5",
    "UPSTREAM_MAX_ATTEMPTS": "3",
    "DJANGO_LOG_LEVEL": "WARNING",
}


class Children:
    """Every process the bench starts, each in its own process group, all killed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def start(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = (self.workdir / log_name).open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        with self.lock:
            self.procs.append(proc)
        return proc

    @staticmethod
    def sigkill(proc: subprocess.Popen) -> bool:
        """SIGKILL the process group; True if the process was still alive."""
        if proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        proc.wait(10)
        return True

    def stop_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def push_one(pk: int, key: str) -> None:
    """The child "web process": one single push through the service, as a request would."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from subscriptions.models import InvoiceStatus, SubscriptionInvoice
    from subscriptions.services import subscription_invoice_set_status

    actor = get_user_model().objects.get(username="bench")
    record = SubscriptionInvoice.objects.get(pk=pk)
    try:
        subscription_invoice_set_status(
            record=record,
            status=InvoiceStatus.CANCEL,
            actor=actor,
            reason="bench",
            idempotency_key=key,
        )
        print(f"push {pk}: done", flush=True)
    except Exception as error:  # reported, the bench judges the outcome from the database
        print(f"push {pk}: {type(error).__name__}: {error}", flush=True)


def create_one(pk: int, key: str) -> None:
    """The child "web process": one Paynet create through the service, as a request would."""
    import django

    django.setup()
    from datetime import datetime
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from subscriptions.models import Subscription
    from subscriptions.services import subscription_invoice_create

    actor = get_user_model().objects.get(username="bench")
    try:
        record = subscription_invoice_create(
            subscription=Subscription.objects.get(pk=pk),
            val_date=datetime.fromisoformat(CREATE_VAL_DATE),
            amount=Decimal(CREATE_AMOUNT),
            actor=actor,
            reason="bench",
            idempotency_key=key,
        )
        print(f"create {pk} ({key}): done, {record.invoice_no}", flush=True)
    except Exception as error:  # reported, the bench judges the outcome from the sandbox
        print(f"create {pk} ({key}): {type(error).__name__}: {error}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--items", type=int, default=500, help="items per job")
    parser.add_argument("--singles", type=int, default=12, help="single pushes killed mid-request")
    parser.add_argument("--creates", type=int, default=4, help="creates killed, then retried")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-kills", type=int, default=40, help="at most this many")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill schedule")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    parser.add_argument(
        "--outages",
        type=int,
        default=None,
        help="database outages on a private cluster (default 3 when it can be started, else 0)",
    )
    parser.add_argument("--outage-seconds", type=float, default=8.0)
    parser.add_argument("--tasks-backend", choices=["database", "rq"], default="database")
    parser.add_argument("--push-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--create-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.push_one is not None:
        push_one(args.push_one, args.key)
        return
    if args.create_one is not None:
        create_one(args.create_one, args.key)
        return

    if args.outages is None:
        reason = cluster_unavailable_reason()
        args.outages = 0 if reason else 3
        if reason:
            print(f"no database outages: {reason}", flush=True)
    cluster = None
    if args.outages > 0:
        # Our own cluster: the machine's shared PostgreSQL is never stopped.
        cluster = PrivateCluster().init()
        url = cluster.create_database("bench_crash")
        print(f"private PostgreSQL cluster on port {cluster.port} ({cluster.root})", flush=True)
    else:
        url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
        if not url.startswith("postgres"):
            sys.exit("crash_safety.py needs PostgreSQL: set BENCH_DATABASE_URL=postgres://...")
        fresh_postgres(url)
    workdir = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": url,
            "SANDBOX_URL": sandbox_url,
            **WORKER_ENV,
            "TASKS_BACKEND": args.tasks_backend,
            # The push path is measured, not the wait for a second person: no approval.
            "APPROVAL_MIN_ITEMS": "1000000000",
            "APPROVAL_MIN_AMOUNT": "1000000000000",
        }
    )
    children = Children(workdir)
    try:
        children.start(
            [
                "manage.py",
                "sandbox",
                "--port",
                str(port),
                "--latency-ms",
                str(args.latency_ms),
            ],
            "sandbox.log",
        )
        if args.tasks_backend == "rq":
            os.environ["REDIS_URL"] = _redis_url()
            _flush_redis()
        ok = run(args, sandbox_url, workdir, children, cluster)
    finally:
        children.stop_all()
        if cluster is not None:
            cluster.destroy()
    if not ok:
        sys.exit(1)


def _redis_url() -> str:
    from urllib.parse import urlsplit

    base = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return f"{base.scheme}://{base.netloc}/{RQ_REDIS_DB}"


def _flush_redis() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


def db_down(error: BaseException) -> bool:
    """The bench's own queries during an outage: wait, as the product does."""
    from django.db.utils import InterfaceError, OperationalError

    from upstream.liveness.database import drop_connection

    if isinstance(error, OperationalError | InterfaceError):
        drop_connection()
        return True
    return False


class Bench:
    def __init__(
        self,
        args,
        sandbox_url: str,
        workdir: Path,
        children: Children,
        cluster: PrivateCluster | None = None,
    ) -> None:
        import requests

        self.args = args
        self.sandbox_url = sandbox_url
        self.workdir = workdir
        self.children = children
        self.http = requests.Session()
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.worker_kills = 0
        self.worker_kills_mid_send = 0
        self.web_kills = 0
        self.web_finished_first = 0
        self.single_notes: list[str] = []
        self.create_notes: list[str] = []
        self.create_subscriptions: list = []
        self.worker_starts = 0
        self.cluster = cluster
        self.outages = 0
        self.outage_log: list[str] = []
        self.database_down = threading.Event()
        self.worker_self_exits = 0
        self.settle_s = 0.0

    def sandbox(self, method: str, path: str, **kwargs):
        response = self.http.request(method, f"{self.sandbox_url}/_sandbox{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    # --- workers ---------------------------------------------------------------------------

    def start_worker(self, slot: int) -> subprocess.Popen:
        self.worker_starts += 1
        if self.args.tasks_backend == "rq":
            command = [
                "manage.py",
                "rqworker",
                "--with-scheduler",
                "--job-class",
                "django_tasks_rq.Job",
                "default",
            ]
        else:
            command = ["manage.py", "db_worker", "--interval", "0.1", "--no-startup-delay"]
            command.append("--no-reload")
        return self.children.start(command, f"worker{slot}.log")

    def kill_worker(self, proc: subprocess.Popen) -> None:
        from upstream.models import JobItem

        sending = 0
        if not self.database_down.is_set():
            try:
                sending = JobItem.objects.filter(
                    state=JobItem.State.SENDING, claimed_by__contains=f":{proc.pid}:"
                ).count()
            except Exception as error:
                if not db_down(error):
                    raise
        if self.children.sigkill(proc):
            self.worker_kills += 1
            self.worker_kills_mid_send += sending > 0

    # --- single pushes, killed mid-request ---------------------------------------------------

    def singles(self, records: list, stop: threading.Event) -> None:
        from django.db import connection

        from upstream.models import UpstreamCall

        try:
            for record in records:
                if stop.wait(self.rng.uniform(1.0, 3.0)):
                    return
                while self.database_down.is_set() and not stop.wait(0.2):
                    pass  # a push is started with the database up; it may go down under it
                self._hold("invoice_status_update", {"invoice_no": record.invoice_no})
                delay = self.rng.uniform(0, SINGLE_EXTRA_LATENCY + 0.2)
                proc = self.children.start(
                    [
                        "bench/crash_safety.py",
                        "--push-one",
                        str(record.pk),
                        "--key",
                        f"bench-{record.pk}",
                    ],
                    "singles.log",
                )
                calls = UpstreamCall.objects.filter(
                    operation="invoice_status_update", target_id=str(record.pk)
                )
                if not self._kill_after_call_row(proc, calls, delay, self.single_notes, record.pk):
                    self.web_finished_first += 1
        finally:
            connection.close()

    def _hold(self, operation: str, match: dict) -> None:
        """The sandbox holds the next matching write for SINGLE_EXTRA_LATENCY more."""
        rule = {
            "kind": "latency",
            "seconds": SINGLE_EXTRA_LATENCY,
            "service": "paynet",
            "operation": operation,
            "match": match,
            "times": 1,
        }
        self.sandbox("POST", "/faults", json={"replace": False, "rules": [rule]})

    def _kill_after_call_row(self, proc, calls, delay: float, notes: list[str], pk: int) -> bool:
        """SIGKILL a web process `delay` s after its pending call row is committed (so before,
        during or after its request); False when it had exited by itself first."""
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if calls.exists():
                    break
            except Exception as error:
                if not db_down(error):
                    raise
                time.sleep(0.2)
            time.sleep(0.01)
        time.sleep(delay)
        if self.children.sigkill(proc):
            with self.lock:
                self.web_kills += 1
            notes.append(f"{pk}: killed {delay:.2f}s after its call row")
            return True
        notes.append(f"{pk}: exited before its kill ({delay:.2f}s)")
        return False

    # --- creates, killed mid-request, then sent again ------------------------------------------

    def creates(self, subscriptions: list, stop: threading.Event) -> None:
        from django.db import connection

        from upstream.models import UpstreamCall

        try:
            for sub in subscriptions:
                if stop.wait(self.rng.uniform(0.5, 1.5)):
                    return
                while self.database_down.is_set() and not stop.wait(0.2):
                    pass
                self._hold("create_invoice", {"subscription_id": sub.subscription_id})
                delay = self.rng.uniform(0, SINGLE_EXTRA_LATENCY + 0.2)
                proc = self._create(sub, 1)
                calls = UpstreamCall.objects.filter(
                    operation="create_invoice", target_id=str(sub.pk)
                )
                self._kill_after_call_row(proc, calls, delay, self.create_notes, sub.pk)
                self._wait(self._create(sub, 2))  # the person sends it again at once
            if stop.wait(CREATE_LATE_RETRY):
                return
            for sub in subscriptions:
                self._wait(self._create(sub, 3))  # and again, once the killed one's lease ran out
        finally:
            connection.close()

    def _create(self, sub, attempt: int) -> subprocess.Popen:
        while self.database_down.is_set():
            time.sleep(0.2)  # sent with the database up; it may go down under it
        return self.children.start(
            ["bench/crash_safety.py", "--create-one", str(sub.pk), "--key", f"c{sub.pk}-{attempt}"],
            "creates.log",
        )

    def _wait(self, proc: subprocess.Popen) -> None:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            Children.sigkill(proc)

    # --- database outages ----------------------------------------------------------------------

    def outage_begin(self) -> None:
        from django.db import connection

        connection.close()
        self.database_down.set()
        self.cluster.stop_hard()
        self.outages += 1

    def outage_end(self, began: float) -> None:
        self.cluster.start()
        self.database_down.clear()
        self.outage_log.append(f"outage {self.outages}: {time.monotonic() - began:.1f}s down")

    # --- the run -----------------------------------------------------------------------------

    def sweep(self) -> str:
        from django.core.management import call_command

        out = io.StringIO()
        call_command("jobs_sweep", stdout=out)
        return out.getvalue().strip()


def run(
    args, sandbox_url: str, workdir: Path, children: Children, cluster: PrivateCluster | None
) -> bool:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
    from subscriptions.services import subscription_invoice_set_status_bulk
    from subscriptions.sync import paynet_sync
    from upstream.models import Job

    bench = Bench(args, sandbox_url, workdir, children, cluster)
    started = time.monotonic()
    deadline = started + args.timeout
    for _ in range(200):
        try:
            bench.sandbox("GET", "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    per_sub = 20
    needed = args.jobs * args.items + args.singles
    seeded = bench.sandbox(
        "POST",
        "/state/paynet",
        json={
            "command": "seed_bulk",
            # The creates get subscriptions of their own, whose records no push targets.
            "subscriptions": -(-needed // per_sub) + args.creates,
            "records_per_subscription": per_sub,
        },
    )
    call_command("migrate", verbosity=0)
    actor = get_user_model().objects.create_superuser("bench", password=None)
    paynet_sync()
    create_ids = seeded["subscriptions"][len(seeded["subscriptions"]) - args.creates :]
    bench.create_subscriptions = list(
        Subscription.objects.filter(subscription_id__in=create_ids).order_by("pk")
    )
    ids = list(
        SubscriptionInvoice.objects.filter(
            subscription__in=Subscription.objects.filter(
                subscription_id__in=seeded["subscriptions"]
            ).exclude(subscription_id__in=create_ids),
            status=InvoiceStatus.WAITING,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    assert len(ids) >= needed, f"seeded {len(ids)} waiting records, need {needed}"
    single_ids = ids[: args.singles]
    targets = [InvoiceStatus.CANCEL, InvoiceStatus.DONE_UNSUCCEED]
    for n in range(args.jobs):
        chunk = ids[args.singles + n * args.items : args.singles + (n + 1) * args.items]
        subscription_invoice_set_status_bulk(
            records=SubscriptionInvoice.objects.filter(pk__in=chunk),
            status=targets[n % 2],
            actor=actor,
            reason="bench: crash safety",
        )
    call_command("jobs_sweep", schedule=True, stdout=io.StringIO())
    setup_s = time.monotonic() - started
    print(f"setup: {setup_s:.1f}s, logs in {workdir}", flush=True)

    workers: dict[int, subprocess.Popen | None] = {}
    born: dict[int, float] = {}
    restart_at: dict[int, float] = {}
    for slot in range(args.workers):
        workers[slot] = bench.start_worker(slot)
        born[slot] = time.monotonic()
    stop = threading.Event()
    singles = threading.Thread(
        target=bench.singles,
        args=(list(SubscriptionInvoice.objects.filter(pk__in=single_ids).order_by("pk")), stop),
        daemon=True,
    )
    singles.start()
    creates = threading.Thread(
        target=bench.creates, args=(bench.create_subscriptions, stop), daemon=True
    )
    creates.start()
    run_started = time.monotonic()
    next_kill = run_started + bench.rng.uniform(*KILL_GAP)
    next_sweep = run_started + SWEEP_EVERY
    sweeps = 0
    timed_out = False
    bulk_done_at = None
    outages = args.outages
    own_sweeps = outages == 0  # with outages, the workers' periodic sweep must do it alone
    next_outage = None
    outage_began = None
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                timed_out = True
                break
            for slot, at in list(restart_at.items()):
                if now >= at:
                    workers[slot] = bench.start_worker(slot)
                    born[slot] = now
                    del restart_at[slot]
            if outage_began is not None:
                # The database is away: nothing here may query it; the workers wait for it.
                if now - outage_began >= args.outage_seconds:
                    bench.outage_end(outage_began)
                    print(bench.outage_log[-1], flush=True)
                    outage_began = None
                    next_outage = now + bench.rng.uniform(*OUTAGE_GAP)
                time.sleep(0.1)
                continue
            try:
                unfinished = Job.objects.exclude(state__in=Job.FINISHED_STATES)
                bulk_left = unfinished.filter(inline=False).exists()
                running = Job.objects.filter(state=Job.State.RUNNING, inline=False, succeeded__gt=0)
                job_running = bulk_left and running.exists()
                all_done = (
                    not singles.is_alive() and not creates.is_alive() and not unfinished.exists()
                )
            except Exception as error:
                if not db_down(error):
                    raise
                time.sleep(0.2)
                continue
            if bench.outages < outages and job_running:
                if next_outage is None:
                    next_outage = now + bench.rng.uniform(*OUTAGE_GAP) / 2
                if now >= next_outage:
                    bench.outage_begin()
                    outage_began = time.monotonic()
                    print(f"outage {bench.outages}: PostgreSQL stopped hard", flush=True)
                    continue
            if bulk_left and bench.worker_kills < args.worker_kills and now >= next_kill:
                live = [
                    s
                    for s, p in workers.items()
                    if p is not None and p.poll() is None and now - born[s] >= MIN_WORKER_AGE
                ]
                if live:
                    slot = bench.rng.choice(live)
                    bench.kill_worker(workers[slot])
                    workers[slot] = None
                    restart_at[slot] = now + bench.rng.uniform(*RESTART_GAP)
                    next_kill = now + bench.rng.uniform(*KILL_GAP)
            if not bulk_left and bulk_done_at is None:
                bulk_done_at = now
            if own_sweeps and now >= next_sweep:
                bench.sweep()
                sweeps += 1
                next_sweep = now + SWEEP_EVERY
            for slot, proc in workers.items():
                if proc is not None and proc.poll() is not None and slot not in restart_at:
                    print(f"worker {slot} exited by itself ({proc.returncode})", flush=True)
                    bench.worker_self_exits += 1
                    workers[slot] = None
                    if own_sweeps:
                        restart_at[slot] = now + 1  # without outages: as before
            if all_done and bench.outages >= outages:
                break
            if all_done and not bulk_left:
                break  # the jobs ended before every outage could be had
            time.sleep(0.1)
        run_s = time.monotonic() - run_started
        # Orphaned pending call rows are settled once they are older than the lease: by this
        # process's sweep, or (with outages) by the workers' periodic one.
        if not timed_out and own_sweeps:
            time.sleep(LEASE_SECONDS + 1)
            bench.sweep()
            sweeps += 1
        elif not timed_out:
            from upstream.models import UpstreamCall

            # With RQ the sweep's next run waits for RQ's scheduler, which the last killed worker
            # may have held: its lock lasts 61 s, a live worker looks for it every 30 s.
            settle_started = time.monotonic()
            while UpstreamCall.objects.filter(outcome="pending").exists():
                if time.monotonic() - settle_started > 150:
                    break
                time.sleep(0.5)
            bench.settle_s = time.monotonic() - settle_started
    finally:
        stop.set()
        singles.join(30)
        creates.join(90)
        for proc in workers.values():
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in workers.values():
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    Children.sigkill(proc)

    figures, details = check(bench)
    result = {
        "database": connection.vendor,
        "jobs": args.jobs,
        "items_per_job": args.items,
        "single_pushes": args.singles,
        "creates": len(bench.create_subscriptions),
        "workers": args.workers,
        "latency_ms": args.latency_ms,
        "lease_s": LEASE_SECONDS,
        "seed": args.seed,
        "setup_s": round(setup_s, 1),
        "run_s": round(run_s, 1),
        "bulk_jobs_done_after_s": round(bulk_done_at - run_started, 1) if bulk_done_at else None,
        "worker_starts": bench.worker_starts,
        "worker_kills": bench.worker_kills,
        "worker_kills_while_sending": bench.worker_kills_mid_send,
        "web_kills": bench.web_kills,
        "web_exited_before_kill": bench.web_finished_first,
        "sweeps_run_here": sweeps,
        "tasks_backend": args.tasks_backend,
        "db_outages": bench.outages,
        "outage_seconds": args.outage_seconds if bench.outages else None,
        "outages": bench.outage_log,
        "worker_self_exits": bench.worker_self_exits,
        "pending_calls_settled_after_s": round(bench.settle_s, 1),
        "sweep_chains_waiting": sweep_chains(args.tasks_backend),
        "timed_out": timed_out,
        **details,
        **figures,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"crash_safety-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(
            {
                **result,
                "single_pushes_log": bench.single_notes,
                "creates_log": bench.create_notes,
            },
            indent=2,
        )
    )
    print()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    bad = [k for k in ("applied_twice", "lost", "unlogged_writes", "non_terminal") if figures[k]]
    if result["sweep_chains_waiting"] != 1:
        bad.append("sweep_chains_waiting")
    if bench.outages and bench.worker_self_exits:
        bad.append("worker_self_exits")  # nobody restarts them: a worker must outlive it
    ok = not bad and not timed_out
    if figures["kills"] < MIN_KILLS:
        print(f"warning: only {figures['kills']} kills (aim: {MIN_KILLS}); raise --jobs or --items")
    print(
        f"checks: {'ok' if ok else 'FAILED'} (every change applied once, logged, settled)"
        + (f"; failing: {', '.join(bad)}" if bad else "")
        + ("; TIMED OUT" if timed_out else "")
    )
    print(
        f"kills={figures['kills']} items={figures['items']} creates={figures['creates']} "
        f"db_outages={bench.outages} "
        f"applied_twice={figures['applied_twice']} lost={figures['lost']} "
        f"unlogged_writes={figures['unlogged_writes']} non_terminal={figures['non_terminal']}"
    )
    return ok


def sweep_chains(backend: str) -> int:
    """Periodic sweeps waiting to run: exactly one after any number of outages and kills."""
    if backend == "rq":
        import django_rq
        from rq.job import Job as RQJob

        queue = django_rq.get_queue("default")
        ids = [*queue.scheduled_job_registry.get_job_ids(), *queue.get_job_ids()]
        jobs = RQJob.fetch_many(ids, connection=queue.connection)
        return sum(1 for j in jobs if j and (j.func_name or "").endswith(".jobs_sweep"))
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, task_path__endswith=".jobs_sweep"
    ).count()


def check(bench: Bench) -> tuple[dict, dict]:
    """Compare every operation with the sandbox's ledger and state, and with the call log."""
    from django.db.models import Count

    from subscriptions.models import SubscriptionInvoice
    from subscriptions.pushes import INVOICE_STATUS_KIND
    from upstream.models import Job, JobItem, UpstreamCall

    ledger = bench.sandbox(
        "GET", "/ledger", params={"service": "paynet", "operation": "invoice_status_update"}
    )
    writes = Counter(e["invoice_no"] for e in ledger)
    upstream_status = {
        r["invoice_no"]: r["status"] for r in bench.sandbox("GET", "/state/paynet")["records"]
    }
    items = list(
        JobItem.objects.filter(job__kind=INVOICE_STATUS_KIND).select_related("job").order_by("pk")
    )
    mirror = dict(
        SubscriptionInvoice.objects.filter(pk__in=[int(i.target_id) for i in items]).values_list(
            "pk", "status"
        )
    )
    call_rows = dict(
        UpstreamCall.objects.filter(operation="invoice_status_update")
        .exclude(outcome="rejected")
        .values("target_id")
        .annotate(n=Count("id"))
        .values_list("target_id", "n")
    )
    applied_twice, lost, unlogged = [], [], []
    unlogged_count = 0
    outcomes: Counter = Counter()
    targeted = set()
    for item in items:
        no, target = item.payload["invoice_no"], int(item.payload["status"])
        targeted.add(no)
        outcomes[f"{'single' if item.job.inline else 'job'}:{item.state}:{item.outcome}"] += 1
        ok = item.state == JobItem.State.DONE and item.outcome == JobItem.Outcome.OK
        there = upstream_status.get(no)
        applied = there == target
        ours = mirror.get(int(item.target_id))
        where = f"item {item.pk} (job {item.job_id}, record {item.target_id}, no {no})"
        if writes[no] > 1:
            applied_twice.append(f"{where}: {writes[no]} ledger writes")
        if ok and not applied:
            lost.append(f"{where}: OK here, sandbox status {there}, target {target}")
        elif applied and (not ok or ours != there):
            lost.append(
                f"{where}: applied upstream, item {item.state}/{item.outcome or '-'}, "
                f"mirror {ours} vs sandbox {there}"
            )
        logged = call_rows.get(item.target_id, 0)
        if writes[no] > logged:
            unlogged_count += writes[no] - logged
            unlogged.append(f"{where}: {writes[no]} ledger writes, {logged} call rows")
    foreign = sum(n for no, n in writes.items() if no not in targeted)
    create_figures = _check_creates(bench)
    applied_twice += create_figures["twice"]
    lost += create_figures["lost"]
    unlogged += create_figures["unlogged"]
    unlogged_count += len(create_figures["unlogged"])
    unfinished_jobs = Job.objects.exclude(state__in=Job.FINISHED_STATES)
    not_done = sum(1 for i in items if i.state != JobItem.State.DONE)
    jobs_open = unfinished_jobs.filter(inline=False).count()
    singles_open = unfinished_jobs.filter(inline=True).count()
    pending_calls = UpstreamCall.objects.filter(outcome="pending").count()
    call_outcomes = dict(
        UpstreamCall.objects.filter(operation="invoice_status_update")
        .values("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    # RQ keeps its tasks in Redis: no rows here.
    tasks_running = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).count()
    figures = {
        "kills": bench.worker_kills + bench.web_kills,
        "items": len(items) + len(bench.create_subscriptions),
        "creates": len(bench.create_subscriptions),
        "applied_twice": len(applied_twice),
        "lost": len(lost),
        "unlogged_writes": unlogged_count + foreign,
        "non_terminal": not_done + jobs_open + singles_open + pending_calls,
    }
    details = {
        "item_outcomes": dict(sorted(outcomes.items())),
        "ledger_writes": len(ledger),
        "ledger_records": len(writes),
        "ledger_writes_of_untargeted_records": foreign,
        "status_calls_by_outcome": call_outcomes,
        "items_not_done": not_done,
        "bulk_jobs_not_finished": jobs_open,
        "single_push_jobs_not_finished": singles_open,
        "calls_still_pending": pending_calls,
        "task_rows_left_running": tasks_running,
        "examples_applied_twice": applied_twice[:10],
        "examples_lost": lost[:10],
        "examples_unlogged": unlogged[:10],
    }
    return figures, details


def _check_creates(bench: Bench) -> dict[str, list[str]]:
    """Each killed create, retried at once and after its lease: one record at Paynet, the same
    in the mirror, every write accounted for by a call row."""
    from datetime import datetime
    from decimal import Decimal

    from subscriptions.models import SubscriptionInvoice
    from subscriptions.pushes import CREATE_INVOICE_KIND
    from upstream.models import JobItem, UpstreamCall

    ledger = bench.sandbox(
        "GET", "/ledger", params={"service": "paynet", "operation": "create_invoice"}
    )
    kurus = int(Decimal(CREATE_AMOUNT) * 100)
    made = Counter(str(e["subscription_id"]) for e in ledger if int(e["amount"]) == kurus)
    found: dict[str, list[str]] = {"twice": [], "lost": [], "unlogged": []}
    for sub in bench.create_subscriptions:
        where = f"create on subscription {sub.pk} ({sub.subscription_id})"
        n = made[str(sub.subscription_id)]
        mirrored = SubscriptionInvoice.objects.filter(
            subscription=sub,
            amount=Decimal(CREATE_AMOUNT),
            val_date=datetime.fromisoformat(CREATE_VAL_DATE),
        ).count()
        asked = JobItem.objects.filter(
            job__kind=CREATE_INVOICE_KIND, target_id=str(sub.pk)
        ).exists()
        if n > 1:
            found["twice"].append(f"{where}: {n} records made at Paynet")
        if not asked and n == 0:
            # Each of its processes met an outage before recording anything (as a single push
            # can): nothing was asked of the product, so nothing could be lost.
            bench.create_notes.append(f"{sub.pk}: no operation recorded (outages)")
            continue
        if n == 0 or mirrored != n:
            found["lost"].append(f"{where}: {n} at Paynet, {mirrored} in the mirror")
        rows = (
            UpstreamCall.objects.filter(operation="create_invoice", target_id=str(sub.pk))
            .exclude(outcome="rejected")
            .count()
        )
        if n > rows:
            found["unlogged"].append(f"{where}: {n} ledger writes, {rows} call rows")
    return found


if __name__ == "__main__":
    main()
