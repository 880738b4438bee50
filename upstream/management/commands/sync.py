from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from upstream.errors import UpstreamError
from upstream.services import DbCallRecorder

# Each upstream's sync lives in its app (sync.py); the command only picks one and reports.
SYNCS = {
    "paynet": "subscriptions.sync.paynet_sync",
    "wisecp": "billing.sync.wisecp_sync",
    "payofin": "billqueries.sync.payofin_sync",
}


class Command(BaseCommand):
    help = "Pull an upstream's state into the local mirror and report what changed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("upstream", choices=sorted(SYNCS))
        parser.add_argument(
            "--since", help="only records created on or after this day (YYYY-MM-DD or dd.mm.yyyy)"
        )

    def handle(self, *args, upstream: str, since: str | None, **options) -> None:
        kwargs = {"recorder": DbCallRecorder()}
        if since:
            kwargs["since"] = _parse_day(since)
        try:
            sync = import_string(SYNCS[upstream])
        except ImportError as error:
            raise CommandError(f"{upstream} sync is not available: {error}") from error
        try:
            counts = sync(**kwargs)
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
