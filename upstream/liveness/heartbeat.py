"""Workers' heartbeats: each task worker says it is alive; the dashboard and `worker_alive` read it.

A `db_worker` writes its `WorkerHeartbeat` row from a thread of its own every
WORKER_HEARTBEAT_SECONDS (a job can run for minutes: beats only between tasks would make a busy
worker look dead), and touches a file if asked (`--heartbeat-file`), which an orchestrator can
check without the database. RQ workers keep their own heartbeats in Redis; they are read there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.utils import DatabaseError
from django.utils import timezone

from upstream.liveness.database import drop_connection
from upstream.models import Job, WorkerHeartbeat

logger = logging.getLogger(__name__)

# Heartbeat rows of workers not seen for this long are deleted (each start adds one).
FORGET_AFTER = timedelta(days=7)
# The dashboard lists the workers seen within this.
SHOWN_FOR = timedelta(hours=24)


def worker_id_default() -> str:
    """host:pid:random, as the runner's holders are named (runner.leases.new_worker_id): a
    worker's task rows, item claims and heartbeat then name the same process."""
    from django.utils.crypto import get_random_string

    return f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(8)}"[:64]


class Heartbeat:
    """A worker's heartbeat: its row, written now and then every interval from its own thread."""

    def __init__(self, worker_id: str, *, file: Path | None = None) -> None:
        self.worker_id = worker_id
        self.file = file
        self.interval = max(1.0, float(settings.WORKER_HEARTBEAT_SECONDS))
        self.started_at = timezone.now()
        self.state = WorkerHeartbeat.State.IDLE
        self.task = ""
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.beat()
        self._forget_old()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def set_state(self, state: str, task: str = "") -> None:
        with self._lock:
            self.state, self.task = state, task

    def reconnected(self) -> None:
        with self._lock:
            self.reconnects += 1
            self.state, self.task = WorkerHeartbeat.State.IDLE, ""
        self.beat()

    def beat(self) -> bool:
        """Write the row (True) or, with the database away, only the file (False)."""
        self._touch_file()
        with self._lock:
            values = {
                "hostname": socket.gethostname()[:100],
                "pid": os.getpid(),
                "started_at": self.started_at,
                "seen_at": timezone.now(),
                "state": self.state,
                "task": self.task[:200],
                "reconnects": self.reconnects,
            }
        try:
            WorkerHeartbeat.objects.update_or_create(worker_id=self.worker_id, defaults=values)
        except DatabaseError:
            # The worker's own loop notices the outage and waits for the database; here the
            # dead connection is only dropped so the next beat opens a new one.
            drop_connection()
            return False
        return True

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.beat()
        finally:
            connections.close_all()  # this thread's own connections

    def _touch_file(self) -> None:
        if self.file is None:
            return
        try:
            self.file.touch()
        except OSError:
            logger.warning("cannot touch the heartbeat file %s", self.file)

    def _forget_old(self) -> None:
        try:
            WorkerHeartbeat.objects.filter(seen_at__lt=timezone.now() - FORGET_AFTER).delete()
        except DatabaseError:
            drop_connection()


@dataclass
class WorkerSeen:
    name: str
    hostname: str
    pid: int | None
    seen_at: datetime | None
    state: str
    state_label: str
    task: str = ""
    reconnects: int = 0
    alive: bool = False


@dataclass
class WorkerStatus:
    """What the dashboard says about the task workers."""

    backend: str
    workers: list[WorkerSeen] = field(default_factory=list)
    last_seen_at: datetime | None = None
    alive: int = 0
    jobs_waiting: int = 0
    # "none_alive": no worker seen for WORKER_STALE_SECONDS (with jobs waiting it is urgent).
    warning: str = ""
    # The backend's own registry could not be read (RQ: Redis away).
    unreadable: bool = False


def stale_after() -> timedelta:
    return timedelta(seconds=settings.WORKER_STALE_SECONDS)


def workers_seen() -> list[WorkerSeen]:
    """The task workers seen lately, most recent first, from where the backend keeps them."""
    if settings.TASKS_BACKEND == "rq":
        return _rq_workers()
    now = timezone.now()
    rows = WorkerHeartbeat.objects.filter(seen_at__gte=now - SHOWN_FOR)[:50]
    return [
        WorkerSeen(
            name=row.worker_id,
            hostname=row.hostname,
            pid=row.pid,
            seen_at=row.seen_at,
            state=row.state,
            state_label=str(row.get_state_display()),
            task=row.task.rsplit(".", 1)[-1],
            reconnects=row.reconnects,
            alive=row.seen_at >= now - stale_after(),
        )
        for row in rows
    ]


def _rq_workers() -> list[WorkerSeen]:
    import django_rq
    from rq import Worker

    now = timezone.now()
    seen = []
    for worker in Worker.all(connection=django_rq.get_connection("default")):
        beat = worker.last_heartbeat
        if beat is not None and timezone.is_naive(beat):
            beat = beat.replace(tzinfo=UTC)  # RQ keeps UTC
        busy = worker.get_state() == "busy"
        state = WorkerHeartbeat.State.RUNNING if busy else WorkerHeartbeat.State.IDLE
        seen.append(
            WorkerSeen(
                name=worker.name,
                hostname=worker.hostname or "",
                pid=worker.pid,
                seen_at=beat,
                state=state,
                state_label=str(WorkerHeartbeat.State(state).label),
                alive=beat is not None and beat >= now - stale_after(),
            )
        )
    return sorted(seen, key=lambda w: w.seen_at or now - SHOWN_FOR, reverse=True)


def worker_status() -> WorkerStatus:
    """Who was seen when; a warning when no worker has been seen for WORKER_STALE_SECONDS."""
    status = WorkerStatus(backend=settings.TASKS_BACKEND)
    if settings.TASKS_BACKEND not in ("database", "rq"):
        return status  # immediate or dummy: tasks run in the request, or never
    try:
        status.workers = workers_seen()
    except Exception:  # Redis away or refusing: say so rather than break the dashboard
        logger.warning("cannot read the task workers' registry", exc_info=True)
        status.unreadable = True
    status.alive = sum(1 for w in status.workers if w.alive)
    status.last_seen_at = max((w.seen_at for w in status.workers if w.seen_at), default=None)
    if status.last_seen_at is None and settings.TASKS_BACKEND == "database":
        # Older than the list's day, it still tells how long the silence is.
        status.last_seen_at = (
            WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True).first()
        )
    status.jobs_waiting = Job.objects.filter(state__in=Job.ACTIVE_STATES).count()
    if not status.alive and not status.unreadable:
        status.warning = "none_alive"
    return status


def worker_alive(
    *, worker_id: str | None = None, hostname: str | None = None, max_age: float | None = None
) -> list[WorkerSeen]:
    """The workers (this one, or those of a host, or all) seen within max_age seconds."""
    limit = timezone.now() - (timedelta(seconds=max_age) if max_age else stale_after())
    found = []
    for worker in workers_seen():
        if worker_id and worker.name != worker_id:
            continue
        if hostname and worker.hostname != hostname:
            continue
        if worker.seen_at is not None and worker.seen_at >= limit:
            found.append(worker)
    return found


def dashboard_workers(status: WorkerStatus) -> dict[str, Any]:
    """The dashboard card's context (upstream/console/dashboard.py)."""
    return {
        "status": status,
        "workers": status.workers[:10],
        "urgent": status.warning == "none_alive" and status.jobs_waiting > 0,
    }
