"""Background tasks (django-tasks). They take ids and hold no rules: the runner does the work."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from upstream.pushes import runner

logger = logging.getLogger(__name__)


@task()
def job_run(job_id: int) -> dict[str, int]:
    return runner.run_job(job_id)


@task()
def jobs_sweep(reschedule: bool = False) -> dict[str, int]:
    """Reclaim expired leases; with reschedule=True it queues itself again (a periodic sweep).

    The next run is queued before this one works, so neither a failed run nor a worker killed
    in the middle of it ends the chain; a sweep already waiting is never doubled.
    """
    scheduled = reschedule and _schedule_safely()
    result = runner.sweep()
    result["personal_masked"] = _retention_safely()
    if reschedule and not scheduled:
        _schedule_safely()  # a blip at the start must not end the chain
    return result


def _retention_safely() -> int:
    # Personal data past PERSONAL_DATA_RETENTION_DAYS masked in the call log and history; a
    # failure is logged and the sweep's other work stands.
    from security.retention import personal_data_retention_sweep

    try:
        return personal_data_retention_sweep()
    except Exception:
        logger.exception("sweep: personal data retention failed; the other stages went on")
        return 0


def _schedule_safely() -> bool:
    try:
        schedule_next_sweep()
    except Exception:
        logger.exception("could not queue the next periodic sweep")
        return False
    return True


def schedule_next_sweep() -> bool:
    """Queue the next periodic sweep unless one is already waiting; True if queued."""
    backend = jobs_sweep.get_backend()
    if not backend.supports_defer:
        return False
    if _sweep_waiting():
        return False
    run_after = timezone.now() + timedelta(seconds=settings.JOBS_SWEEP_INTERVAL_SECONDS)
    jobs_sweep.using(run_after=run_after).enqueue(reschedule=True)
    return True


def _sweep_waiting() -> bool:
    from django.apps import apps

    if not apps.is_installed("django_tasks_db"):
        return False
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, task_path__endswith=".jobs_sweep"
    ).exists()


@task()
def upstream_sync_periodic(service: str) -> dict[str, int]:
    """One upstream's periodic sync; it queues its next run first, like the sweep, so a failed
    run (the upstream down, its breaker open) does not end the chain."""
    from upstream.calls.errors import UpstreamError
    from upstream.history.sync import upstream_sync

    try:
        schedule_next_sync(service)
    except Exception:
        logger.exception("could not queue the next periodic %s sync", service)
    try:
        counts = upstream_sync(service)
    except UpstreamError as error:
        logger.warning("periodic %s sync failed: %s", service, error)
        return {"failed": 1}
    return {"created": counts.created, "updated": counts.updated, "deleted": counts.deleted}


def schedule_next_sync(service: str) -> bool:
    """Queue the next periodic sync of `service` unless one is already waiting; True if queued.

    Off when SYNC_INTERVAL_SECONDS is 0 or the task backend cannot run tasks later.
    """
    interval = settings.SYNC_INTERVAL_SECONDS
    backend = upstream_sync_periodic.get_backend()
    if interval <= 0 or not backend.supports_defer:
        return False
    if _sync_waiting(service):
        return False
    run_after = timezone.now() + timedelta(seconds=interval)
    upstream_sync_periodic.using(run_after=run_after).enqueue(service=service)
    return True


def _sync_waiting(service: str) -> bool:
    from django.apps import apps

    if not apps.is_installed("django_tasks_db"):
        return False
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY,
        task_path__endswith=".upstream_sync_periodic",
        args_kwargs__kwargs__service=service,
    ).exists()
