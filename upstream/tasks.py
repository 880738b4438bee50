"""Background tasks (django-tasks). They take ids and hold no rules: the runner does the work."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from . import runner

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
    if reschedule and not scheduled:
        _schedule_safely()  # a blip at the start must not end the chain
    return result


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
