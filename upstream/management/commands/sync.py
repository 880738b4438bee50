import threading
import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from upstream.registry import upstreams
from upstream.tasks import schedule_next_sync, sync_outcome

# How often the progress bar reads the job's counters.
PROGRESS_EVERY = 0.5


class Command(BaseCommand):
    help = (
        "Pull an upstream's state into the local mirror and report what changed. The sync is a "
        "job (it has its page), run here at the upstream's concurrency; a progress bar is shown "
        "on a terminal only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("upstream", choices=sorted(upstreams()), nargs="?")
        parser.add_argument(
            "--schedule",
            action="store_true",
            help="queue the periodic sync of every upstream (SYNC_INTERVAL_SECONDS) on the worker",
        )
        parser.add_argument(
            "--since", help="only records created on or after this day (YYYY-MM-DD or dd.mm.yyyy)"
        )

    def handle(
        self, *args, upstream: str | None, since: str | None, schedule: bool, **options
    ) -> None:
        from upstream.history.sync_job import sync_start
        from upstream.pushes.bulk import run_job

        if schedule:
            queued = [service for service in sorted(upstreams()) if schedule_next_sync(service)]
            self.stdout.write(f"periodic sync queued: {', '.join(queued) or 'none'}")
            return
        if upstream is None:
            raise CommandError(f"name an upstream ({', '.join(upstreams())}) or use --schedule")
        job, created = sync_start(
            upstream, since=_parse_day(since) if since else None, enqueue=False
        )
        terminal = self.stdout.isatty()
        if not created and terminal:
            self.stdout.write(f"{upstream}: sync job #{job.pk} is already running; following it")
        with _Progress(job.pk, upstream, self.stdout._out if terminal else None):
            if created or _abandoned(job):
                # The operator's command runs the job here, through the runner; a sync nobody
                # runs any more (its worker gone) is resumed here rather than waited for.
                run_job(job.pk)
            else:
                _wait(job.pk)
        outcome = sync_outcome(job.pk)
        line = (
            f"{upstream}: {outcome.get('created', 0)} created, {outcome.get('updated', 0)} "
            f"updated, {outcome.get('unchanged', 0)} unchanged, "
            f"{outcome.get('vanished', 0)} vanished"
        )
        if outcome["failed"] or outcome["state"] not in ("succeeded",):
            raise CommandError(
                f"{line}; {upstream} sync failed for {outcome['failed']} record(s) "
                f"(job #{job.pk}, {outcome['state']})"
            )
        self.stdout.write(line)


def _abandoned(job: Any) -> bool:
    from django.utils import timezone

    from upstream.pushes.runner.leases import lease_length

    beat = job.heartbeat_at or job.created_at
    return beat < timezone.now() - lease_length()


def _wait(job_id: int) -> None:
    from upstream.models import Job

    while not Job.objects.get(pk=job_id).is_finished:
        time.sleep(PROGRESS_EVERY)


class _Progress:
    """A tqdm bar over the job's items, fed from its counters by a thread of its own (the run
    itself is not slowed nor touched). Off when stdout is not a terminal (CI, cron)."""

    def __init__(self, job_id: int, service: str, out: Any) -> None:
        self.job_id, self.service, self.out = job_id, service, out
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_Progress":
        if self.out is not None:
            self._thread = threading.Thread(target=self._follow, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        from tqdm import tqdm

        from upstream.models import Job

        bar = tqdm(file=self.out, desc=self.service, unit="item", dynamic_ncols=True)
        try:
            while True:
                finished = self._done.wait(PROGRESS_EVERY)
                job = Job.objects.only(
                    "total", "succeeded", "failed", "skipped", "cancelled", "params"
                ).get(pk=self.job_id)
                listing = (job.params or {}).get("listing") or {}
                bar.total = job.total if listing.get("closed", True) else None
                bar.n = job.done
                bar.set_postfix(failed=job.failed, refresh=False)
                bar.refresh()
                if finished:
                    return
        finally:
            bar.close()
            close_old_connections()
            connection.close()


def _parse_day(value: str):
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise CommandError(f"--since {value!r}: use YYYY-MM-DD or dd.mm.yyyy")
