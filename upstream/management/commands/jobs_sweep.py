from django.core.management.base import BaseCommand, CommandParser

from upstream.pushes.runner import sweep
from upstream.tasks import jobs_sweep


class Command(BaseCommand):
    help = (
        "Reclaim job items whose worker vanished and re-queue stalled jobs. "
        "--schedule queues a sweep task that repeats itself on the worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schedule", action="store_true")

    def handle(self, *args, schedule: bool, **options) -> None:
        if schedule:
            jobs_sweep.enqueue(reschedule=True)
            self.stdout.write("periodic sweep queued")
            return
        result = sweep()
        self.stdout.write(
            f"released {result['released']} items, re-queued {result['requeued']} jobs"
        )
