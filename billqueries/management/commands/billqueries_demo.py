from django.core.management.base import BaseCommand, CommandError

from billqueries.demo import demo_batch_ensure
from upstream.calls.errors import UpstreamError


class Command(BaseCommand):
    help = "Create and run a demo bill-query batch (about 30 lines) unless a batch exists."

    def handle(self, *args, **options) -> None:
        try:
            demo_batch_ensure(log=self.stdout.write)
        except UpstreamError as error:
            raise CommandError(f"Payofin demo failed: {error}") from error
