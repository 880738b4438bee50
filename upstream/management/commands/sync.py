from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser

from upstream.calls.errors import UpstreamError
from upstream.calls.log import DbCallRecorder
from upstream.history.sync import upstream_sync
from upstream.registry import upstreams
from upstream.tasks import schedule_next_sync


class Command(BaseCommand):
    help = "Pull an upstream's state into the local mirror and report what changed."

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
        if schedule:
            queued = [service for service in sorted(upstreams()) if schedule_next_sync(service)]
            self.stdout.write(f"periodic sync queued: {', '.join(queued) or 'none'}")
            return
        if upstream is None:
            raise CommandError(f"name an upstream ({', '.join(upstreams())}) or use --schedule")
        kwargs = {"recorder": DbCallRecorder()}
        if since:
            kwargs["since"] = _parse_day(since)
        try:
            counts = upstream_sync(upstream, **kwargs)
        except UpstreamError as error:
            raise CommandError(f"{upstream} sync failed: {error}") from error
        self.stdout.write(
            f"{upstream}: {counts.created} created, {counts.updated} updated, "
            f"{counts.unchanged} unchanged"
        )


def _parse_day(value: str):
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise CommandError(f"--since {value!r}: use YYYY-MM-DD or dd.mm.yyyy")
