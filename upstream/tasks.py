"""Background tasks (django-tasks). They take ids and hold no rules: the runner does the work."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from . import runner


@task()
def job_run(job_id: int) -> dict[str, int]:
    return runner.run_job(job_id)


@task()
def jobs_sweep(reschedule: bool = False) -> dict[str, int]:
    """Reclaim expired leases; with reschedule=True it queues itself again (a periodic sweep)."""
    result = runner.sweep()
    if reschedule and jobs_sweep.get_backend().supports_defer:
        run_after = timezone.now() + timedelta(seconds=settings.JOBS_SWEEP_INTERVAL_SECONDS)
        jobs_sweep.using(run_after=run_after).enqueue(reschedule=True)
    return result
