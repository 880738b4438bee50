"""The sweep: settles what killed processes left behind, run periodically (`jobs_sweep`).

django-tasks-db keeps no lease, so the runner keeps its own and the sweep acts on it: expired
leases put their items in doubt, jobs whose worker went quiet are re-enqueued (or closed when
nothing is left), call rows left pending are closed once their item is settled, and task rows a
killed worker left running are closed; approvals past their time expire, the dashboard's
totals are refreshed and the upstream slots of holders that stopped renewing come back. Each
stage runs on its own: one that fails is logged and the others still run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.calls.slots import release_expired_slots
from upstream.models import Job, JobItem, UpstreamCall, UpstreamSlotLease
from upstream.pushes.approvals import expire_approvals
from upstream.pushes.runner.finalize import job_finalize
from upstream.pushes.runner.leases import WEB_LEASE, lease_length, release_expired_leases
from upstream.pushes.runner.send import hand_over

logger = logging.getLogger(__name__)


class WorkerStopped(Exception):
    """Why the sweep closed a task a killed worker left running (its exception class path)."""


# Written to task rows, and read back by django-tasks (TaskError.exception_class imports it).
# The package re-exports WorkerStopped, so rows written before the runner was a package resolve.
WORKER_STOPPED_PATH = "upstream.pushes.runner.WorkerStopped"


def sweep(*, enqueue: bool = True) -> dict[str, int]:
    """Reclaim expired leases, re-enqueue jobs whose worker has gone quiet, settle what killed
    processes left behind. Each stage runs on its own: one that fails is logged and the others
    still run, so no single bad row can stop the sweep."""
    released = _stage("release leases", release_expired_leases)
    # Before any re-queue: a re-queued job's task_id names its new task and its heartbeat is
    # fresh, so the task row its killed worker left running would never be closed afterwards.
    closed = _stage("close tasks", close_abandoned_tasks)
    requeued = _stage("requeue jobs", lambda: requeue_stalled_jobs(enqueue=enqueue))
    settled = _stage("settle calls", settle_orphan_calls)
    closed += _stage("close tasks", close_abandoned_tasks)  # the tasks of jobs finalized above
    expired = _stage("expire approvals", expire_approvals)
    totals = _stage("dashboard totals", _refresh_dashboard_totals)
    reopened = _stage("drift re-pushes", _settle_drift_repushes)
    slots = _stage("upstream slots", release_expired_slots)
    return {
        "released": released,
        "requeued": requeued,
        "calls_settled": settled,
        "tasks_closed": closed,
        "approvals_expired": expired,
        "dashboard_totals": totals,
        "drift_reopened": reopened,
        "slots_released": slots,
    }


def _settle_drift_repushes() -> int:
    # After the approvals expired above: a re-push whose job ended without changing its record
    # (rejected, expired, cancelled, failed, skipped) leaves its drift entry open again.
    from upstream.history.drift import drift_repushes_settle

    return drift_repushes_settle()


def _refresh_dashboard_totals() -> int:
    from upstream.console.dashboard import refresh_totals

    return refresh_totals(max_age=settings.DASHBOARD_TOTALS_SECONDS)


def _stage(name: str, work: Callable[[], int]) -> int:
    try:
        return work()
    except Exception:
        logger.exception("sweep: %s failed; the other stages go on", name)
        return 0


def requeue_stalled_jobs(*, enqueue: bool = True) -> int:
    from upstream.pushes.jobs import job_enqueue

    stale_before = timezone.now() - lease_length()
    requeued = 0
    # A single push (inline) renews its heartbeat every few seconds while its web process
    # works: quiet for a web lease, its process is gone, and it is queued now, so it is read back
    # within this sweep's interval rather than after a worker's lease.
    web_quiet = Q(inline=True, heartbeat_at__lt=timezone.now() - WEB_LEASE)
    candidates = Job.objects.filter(state__in=Job.ACTIVE_STATES).filter(
        Q(heartbeat_at__lt=stale_before)
        | Q(heartbeat_at__isnull=True, created_at__lt=stale_before)
        | web_quiet
    )
    for job in candidates:
        live = JobItem.objects.filter(
            job=job, state=JobItem.State.SENDING, lease_until__gte=timezone.now()
        ).exists()
        if live:
            continue
        pending = JobItem.objects.filter(job=job, state=JobItem.State.PENDING)
        if not pending.exists() and job_finalize(job.pk):
            continue
        quiet_web_push = job.heartbeat_at is not None and job.heartbeat_at >= stale_before
        if quiet_web_push and _task_alive(job):
            continue  # a worker has it already (reading it back): do not queue it twice
        if enqueue and not _task_waiting(job):
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
                job_enqueue(job)
            requeued += 1
    return requeued


def settle_orphan_calls(limit: int = 1000) -> int:
    """Finish call rows a killed process left pending, saying how their item was settled.

    A pending row means the request may have left and its answer was never recorded. Its item
    is settled by reading the record back (release_expired_leases, then the runner); once the
    item is done, the row is closed as in doubt with that outcome. Rows of items still in flight
    are left for a later sweep.
    """
    now = timezone.now()
    orphans = (
        UpstreamCall.objects.filter(outcome="pending", created_at__lt=now - lease_length())
        .select_related("job_item")
        .order_by("id")[:limit]
    )
    count = 0
    for call in orphans:
        item = call.job_item
        if item is not None and item.state != JobItem.State.DONE:
            continue
        if item is None:
            note = _("The process stopped before the answer was recorded.")
        else:
            note = _(
                "The process stopped before the answer was recorded. Read back afterwards: "
                "%(outcome)s. %(message)s"
            ) % {"outcome": item.get_outcome_display(), "message": item.message}
        # A read that never answered changed nothing: it simply failed.
        count += UpstreamCall.objects.filter(pk=call.pk, outcome="pending").update(
            outcome="in_doubt" if call.mutating else "failed", error=note.strip()
        )
    return count


def close_abandoned_tasks() -> int:
    """Task rows a killed db_worker left RUNNING (django-tasks-db keeps no lease of its own).

    A job's task is abandoned once the job is finished or nothing has worked on it for a lease;
    a sweep's task once it has run for longer than a few sweep intervals.
    """
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, TaskResultStatus, task_backends

    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    if type(backend).__module__.split(".")[0] != "django_tasks_db":
        return 0  # only the database backend keeps task rows here
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    running = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING)
    # The same "gone quiet" as sweep()'s: a worker killed before its first heartbeat leaves none.
    stale_jobs = Job.objects.filter(
        Q(state__in=Job.FINISHED_STATES)
        | Q(heartbeat_at__lt=now - lease_length())
        | Q(heartbeat_at__isnull=True, created_at__lt=now - lease_length())
    ).exclude(task_id="")
    job_tasks = running.filter(task_path__endswith=".job_run").filter(
        id__in=[t for t in stale_jobs.values_list("task_id", flat=True) if _is_uuid(t)]
    )
    sweep_tasks = running.filter(
        task_path__endswith=".jobs_sweep",
        started_at__lt=now - 3 * timedelta(seconds=settings.JOBS_SWEEP_INTERVAL_SECONDS),
    )
    closed = 0
    for tasks in (job_tasks, sweep_tasks):
        closed += tasks.update(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            exception_class_path=WORKER_STOPPED_PATH,
            traceback="The worker stopped while running this task; closed by the sweep.",
        )
    return closed


def settle_stopped_runs(holder_prefix: str, error: BaseException) -> list[int]:
    """What this process's job runs left when the database went away under them, settled now
    rather than after their leases: the process knows no run of its own is alive any more.

    Its runs' upstream slots are given back. Items still sending under one of its holders
    (`host:pid:` of `new_worker_id`) are handed over in doubt, keeping their records, to be
    read back; the jobs are queued again unless a task of theirs already waits. Returns the
    jobs queued again.
    """
    from upstream.pushes.kinds import kind_for

    # Their slots of the upstreams' caps too: the jobs' next runs must not wait out the leases.
    UpstreamSlotLease.objects.filter(holder__startswith=holder_prefix).delete()
    held = (
        JobItem.objects.filter(state=JobItem.State.SENDING, claimed_by__startswith=holder_prefix)
        .values_list("job_id", "claimed_by")
        .distinct()
    )
    job_ids: set[int] = set()
    for job_id, holder in held:
        job = Job.objects.get(pk=job_id)
        hand_over(job, kind_for(job.kind).target_type, holder, error, sent=True)
        job_ids.add(job_id)
    return requeue_jobs(job_ids)


def requeue_jobs(job_ids: set[int]) -> list[int]:
    """Queue these jobs' runs again (those still active, with no task of theirs waiting)."""
    from upstream.pushes.jobs import job_enqueue

    requeued = []
    for job in Job.objects.filter(pk__in=job_ids, state__in=Job.ACTIVE_STATES).order_by("pk"):
        if _task_waiting(job):
            continue
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
            job_enqueue(job)
        requeued.append(job.pk)
    return requeued


def close_worker_tasks(worker_id: str, backend_name: str) -> list[str]:
    """Task rows a db_worker was running when the database went away: it is alive and knows it
    runs none of them now, so they are closed at once (the sweep would, after a lease or a few
    sweep intervals). Returns the closed task ids."""
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    running = DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, backend_name=backend_name
    )
    mine = [
        str(row.pk)
        for row in running.only("id", "worker_ids")
        if row.worker_ids[-1:] == [worker_id]
    ]
    if mine:
        running.filter(pk__in=mine).update(
            status=TaskResultStatus.FAILED,
            finished_at=timezone.now(),
            exception_class_path=WORKER_STOPPED_PATH,
            traceback="The database went away while this task ran; closed by its worker.",
        )
    return mine


def _is_uuid(value: str) -> bool:
    # Task ids of other backends (RQ, immediate, dummy) are not the database backend's UUIDs.
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _task_status(job: Job) -> str | None:
    """The status of the job's last task, or None when there is none or it cannot be read."""
    if not job.task_id:
        return None
    from django_tasks import default_task_backend

    try:
        return default_task_backend.get_result(job.task_id).status
    except Exception:
        return None


def _task_alive(job: Job) -> bool:
    """Is the job's last task queued or running?"""
    from django_tasks import TaskResultStatus

    return _task_status(job) in (TaskResultStatus.READY, TaskResultStatus.RUNNING)


def _task_waiting(job: Job) -> bool:
    """Is the job's last task still waiting in the queue (so a new one would only duplicate it)?"""
    from django_tasks import TaskResultStatus

    return _task_status(job) == TaskResultStatus.READY
    from django_tasks import TaskResultStatus, default_task_backend

    try:
        return default_task_backend.get_result(job.task_id).status == TaskResultStatus.READY
    except Exception:
        return False
