"""Background tasks (django-tasks). They take ids and hold no rules: the runner does the work."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tasks import task

from upstream.pushes import bulk, runner

logger = logging.getLogger(__name__)


@task()
def job_run(job_id: int) -> dict[str, int]:
    return bulk.run_job(job_id)


@task()
def jobs_sweep(reschedule: bool = False) -> dict[str, int]:
    """Reclaim expired leases; with reschedule=True it queues itself again (a periodic sweep).

    The next run is queued before this one works, so neither a failed run nor a worker killed
    in the middle of it ends the chain; a sweep already waiting is never doubled.
    """
    scheduled = reschedule and _schedule_safely()
    result = runner.sweep()
    result["personal_masked"] = _retention_safely()
    result["keys_forgotten"] = _forget_keys_safely()
    if reschedule and not scheduled:
        _schedule_safely()  # a blip at the start must not end the chain
    if reschedule:
        _restore_syncs()
    return result


def _restore_syncs() -> None:
    # Each upstream's periodic sync, put back if an outage broke its chain (never doubled).
    from upstream.registry import upstreams

    for service in sorted(upstreams()):
        try:
            schedule_next_sync(service)
        except Exception:
            logger.exception("could not put back the periodic %s sync", service)


def _retention_safely() -> int:
    # Personal data past PERSONAL_DATA_RETENTION_DAYS masked in the call log and history; a
    # failure is logged and the sweep's other work stands.
    from security.retention import personal_data_retention_sweep

    try:
        return personal_data_retention_sweep()
    except Exception:
        logger.exception("sweep: personal data retention failed; the other stages went on")
        return 0


def _forget_keys_safely() -> int:
    # Idempotency keys and one-time tokens past their 24 h; a failure leaves them for next time.
    from upstream.pushes.once import forget_expired

    try:
        return forget_expired()
    except Exception:
        logger.exception("sweep: forgetting expired idempotency keys failed")
        return 0


def _schedule_safely() -> bool:
    try:
        schedule_next_sweep()
    except Exception:
        logger.exception("could not queue the next periodic sweep")
        return False
    return True


def schedule_next_sweep(*, delay: float | None = None) -> bool:
    """Queue the next periodic sweep unless one is already waiting; True if queued.

    The check and the enqueue hold one lock, so two processes (a worker starting while a sweep
    queues its next run) never start two chains.
    """
    backend = jobs_sweep.get_backend()
    if not backend.supports_defer:
        return False
    seconds = settings.JOBS_SWEEP_INTERVAL_SECONDS if delay is None else delay
    with _chain_lock("jobs_sweep"):
        if _sweep_waiting():
            return False
        run_after = timezone.now() + timedelta(seconds=seconds)
        jobs_sweep.using(run_after=run_after).enqueue(reschedule=True)
    return True


def _sweep_waiting() -> bool:
    if _backend_is("django_tasks_rq"):
        return _rq_waiting(".jobs_sweep")
    if not _backend_is("django_tasks_db"):
        return False
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, task_path__endswith=".jobs_sweep"
    ).exists()


def ensure_periodic_chains() -> dict[str, bool]:
    """Put back a periodic chain (the sweep, each upstream's sync) that an outage or a killed
    worker broke; one already waiting is left alone, so there is never more than one of each.

    Called when a worker starts and after it got its database back, and by every periodic sync
    (for the sweep) and sweep (for the syncs), so a broken chain is back within one interval of
    any of them. Returns, per chain, whether it had to be queued.
    """
    from upstream.registry import upstreams

    # A sweep put back runs soon: what the outage left (leases, in-doubt items) waits for it.
    queued = {"jobs_sweep": schedule_next_sweep(delay=1)}
    for service in sorted(upstreams()):
        queued[f"sync:{service}"] = schedule_next_sync(service)
    return queued


@contextmanager
def _chain_lock(name: str) -> Iterator[None]:
    """One process at a time checks for a waiting task and queues one, where the tasks live."""
    if _backend_is("django_tasks_rq"):
        # In Redis, so a chain keeps going while the database is away.
        import django_rq

        lock = django_rq.get_connection("default").lock(
            f"backoffice:chain:{name}", timeout=30, blocking_timeout=10
        )
        with lock:
            yield
        return
    # SQLite's IMMEDIATE transaction already lets one writer in at a time; PostgreSQL takes a
    # transaction-scoped advisory lock named after the chain.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(name.encode())])
        yield


def _backend_is(package: str) -> bool:
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    return type(backend).__module__.split(".")[0] == package


def _rq_waiting(suffix: str, **kwargs: object) -> bool:
    """Is a task of this path (with these kwargs) queued or scheduled in Redis?"""
    import django_rq
    from rq.job import Job as RQJob

    queue = django_rq.get_queue("default")
    ids = [*queue.scheduled_job_registry.get_job_ids(), *queue.get_job_ids()]
    for job in RQJob.fetch_many(ids, connection=queue.connection):
        if job is None or not (job.func_name or "").endswith(suffix):
            continue
        if all(job.kwargs.get(key) == value for key, value in kwargs.items()):
            return True
    return False


@task()
def upstream_sync_periodic(service: str) -> dict[str, int]:
    """One upstream's periodic sync, a job run here (upstream.history.sync_job); it queues its
    next run first, like the sweep, so a failed run (the upstream down, its breaker open) does
    not end the chain. A sync of the upstream already queued or running is left to its run."""
    from upstream.history.sync_job import sync_start

    try:
        schedule_next_sync(service)
        schedule_next_sweep()  # the sweep's chain, put back if an outage broke it
    except Exception:
        logger.exception("could not queue the next periodic %s sync", service)
    job, created = sync_start(service, enqueue=False)
    if not created:
        logger.info("periodic %s sync: job %s is already running it", service, job.pk)
        return {"job": job.pk, "already_running": 1}
    bulk.run_job(job.pk)
    return sync_outcome(job.pk)


def sync_outcome(job_id: int) -> dict[str, Any]:
    """A sync job's figures, as the periodic task and `manage.py sync` report them."""
    from upstream.models import Job

    job = Job.objects.get(pk=job_id)
    summary = (job.params or {}).get("summary") or {}
    return {"job": job.pk, "state": job.state, **summary, "failed": job.failed}


def schedule_next_sync(service: str) -> bool:
    """Queue the next periodic sync of `service` unless one is already waiting; True if queued.

    Off when SYNC_INTERVAL_SECONDS is 0 or the task backend cannot run tasks later.
    """
    interval = settings.SYNC_INTERVAL_SECONDS
    backend = upstream_sync_periodic.get_backend()
    if interval <= 0 or not backend.supports_defer:
        return False
    with _chain_lock(f"sync:{service}"):
        if _sync_waiting(service):
            return False
        run_after = timezone.now() + timedelta(seconds=interval)
        upstream_sync_periodic.using(run_after=run_after).enqueue(service=service)
    return True


def _sync_waiting(service: str) -> bool:
    if _backend_is("django_tasks_rq"):
        return _rq_waiting(".upstream_sync_periodic", service=service)
    if not _backend_is("django_tasks_db"):
        return False
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY,
        task_path__endswith=".upstream_sync_periodic",
        args_kwargs__kwargs__service=service,
    ).exists()
