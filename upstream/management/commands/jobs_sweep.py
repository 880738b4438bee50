from django.core.management.base import BaseCommand, CommandParser

from upstream.pushes.runner import sweep
from upstream.tasks import jobs_sweep, schedule_next_sweep


class Command(BaseCommand):
    help = (
        "Reclaim job items whose worker vanished and re-queue stalled jobs. "
        "--schedule queues a sweep task that repeats itself on the worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schedule", action="store_true")

    def handle(self, *args, schedule: bool, **options) -> None:
        if schedule:
            # One chain only: a sweep already waiting (an earlier start's) is kept.
            if not jobs_sweep.get_backend().supports_defer:
                jobs_sweep.enqueue(reschedule=True)  # runs now; it cannot repeat itself later
                self.stdout.write("periodic sweep queued")
                return
            queued = schedule_next_sweep(delay=0)
            self.stdout.write(
                "periodic sweep queued" if queued else "periodic sweep already queued"
            )
            return
        result = sweep()
        self.stdout.write(
            f"released {result['released']} items, re-queued {result['requeued']} jobs"
        )
