"""The task worker that outlives the database.

django-tasks-db's worker raises out of its loop on the first refused connection (claiming a
task, or marking one failed), so a database restart ended it, and with it the periodic sweep and
syncs. This worker waits for the database with a capped, jittered backoff instead, then settles
what its own runs left and puts the periodic chains back (decision 015).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time

from django.conf import settings
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from upstream.liveness.database import database_reachable, database_unavailable, drop_connection
from upstream.liveness.heartbeat import Heartbeat
from upstream.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# The first wait for the database; each failed probe doubles it, up to WORKER_DB_BACKOFF_CAP.
FIRST_WAIT = 0.5


class ResilientWorker(Worker):
    """django-tasks-db's `Worker`, with a heartbeat, that waits for the database when it goes."""

    def __init__(self, *, heartbeat: Heartbeat, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.heartbeat = heartbeat
        self.outages = 0

    def run(self) -> None:
        self.heartbeat.start()
        # At start too: a worker started while the database is still away waits for it.
        recover = "start"
        last_error: BaseException | None = None
        try:
            while self.running:
                try:
                    if recover:
                        self._recover(after_outage=recover == "outage", error=last_error)
                        recover = ""
                    super().run()
                    return  # --batch or --max-tasks: done
                except Exception as error:
                    if not database_unavailable(error):
                        raise
                    self.wait_for_database(error)
                    recover, last_error = "outage", error
        finally:
            self.heartbeat.stop()

    def run_task(self, db_task_result: DBTaskResult) -> None:
        self.heartbeat.set_state(WorkerHeartbeat.State.RUNNING, db_task_result.task_path)
        try:
            super().run_task(db_task_result)
        finally:
            self.heartbeat.set_state(WorkerHeartbeat.State.IDLE)

    def wait_for_database(self, error: BaseException) -> None:
        """Sleep and probe until the database answers (a signal ends the wait, as it ends the
        library's own sleep: its handler exits when no task runs)."""
        started = time.monotonic()
        logger.warning("the database is unavailable (%s); waiting for it", _first_line(error))
        self.heartbeat.set_state(WorkerHeartbeat.State.WAITING_FOR_DATABASE)
        drop_connection()
        wait = FIRST_WAIT
        cap = max(FIRST_WAIT, float(settings.WORKER_DB_BACKOFF_CAP))
        while self.running:
            # Jittered, so the workers of a fleet do not all knock at the same moment.
            time.sleep(random.uniform(wait / 2, wait))
            if database_reachable():
                break
            wait = min(cap, wait * 2)
        self.outages += 1
        # No random start-up delay on the way back in.
        self.startup_delay = False
        logger.warning("the database is back after %.1f s", time.monotonic() - started)

    def _recover(self, *, after_outage: bool, error: BaseException | None) -> None:
        """Put back what an outage broke: this process's runs (after one) and the chains."""
        from upstream.models import Job
        from upstream.pushes.runner.sweeper import (
            close_worker_tasks,
            requeue_jobs,
            settle_stopped_runs,
        )
        from upstream.tasks import ensure_periodic_chains

        if after_outage:
            self.heartbeat.reconnected()
            closed = close_worker_tasks(self.worker_id, self.backend_name)
            handed = settle_stopped_runs(
                f"{socket.gethostname()}:{os.getpid()}:", error or RuntimeError("outage")
            )
            # A job whose task this worker was running, with nothing sending, lost its runner too.
            orphaned = set(
                Job.objects.filter(task_id__in=closed, state__in=Job.ACTIVE_STATES).values_list(
                    "pk", flat=True
                )
            )
            requeued = sorted(set(handed) | set(requeue_jobs(orphaned - set(handed))))
            if closed or requeued:
                logger.warning(
                    "after the outage: %d task(s) closed, job(s) %s queued again",
                    len(closed),
                    ", ".join(map(str, requeued)) or "none",
                )
        else:
            self.heartbeat.beat()
        queued = [name for name, done in ensure_periodic_chains().items() if done]
        if queued:
            # At a first start this is the usual set-up; after an outage it is a repair.
            level = logging.WARNING if after_outage else logging.INFO
            logger.log(level, "periodic chains queued: %s", ", ".join(queued))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
