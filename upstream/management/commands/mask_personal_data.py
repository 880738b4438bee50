"""Mask the personal data stored before it was masked (or before a field joined
upstream/calls/redaction.py's lists): call log rows get their headers, bodies and URLs as a new
call would store them; then each vertical's registered step masks the texts it wrote about its
customers (job items named after a subscription, titles of jobs that named a customer).
Idempotent; only rows that change are written."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandParser

from upstream.calls.redaction import redact, redact_body, redact_headers
from upstream.models import UpstreamCall
from upstream.registry import remasks


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    # Pair by pair: a repeated key stays, and a URL with nothing to mask is left as it was.
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked = [(key, redact({key: value})[key]) for key, value in pairs]
    if masked == pairs:
        return url
    return urlunsplit(parts._replace(query=urlencode(masked)))[:500]


class Command(BaseCommand):
    help = "Mask personal data (and secrets) stored before masking: call log and job targets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=500, help="rows read at a time")

    def handle(self, *args, batch: int, **options) -> None:
        seen, changed = self.calls(batch)
        self.stdout.write(f"{seen} calls read, {changed} masked")
        # What the verticals wrote about their customers (upstream.registry.register_remask).
        for what, remask in remasks().items():
            self.stdout.write(f"{remask(batch)} {what}")

    def calls(self, batch: int) -> tuple[int, int]:
        fields = ("id", "url", "request_headers", "request", "response")
        last, seen, changed = 0, 0, 0
        while True:
            rows = list(
                UpstreamCall.objects.filter(pk__gt=last).order_by("pk").values(*fields)[:batch]
            )
            if not rows:
                return seen, changed
            for row in rows:
                new = {
                    "url": masked_url(row["url"]),
                    "request_headers": redact_headers(row["request_headers"] or {}),
                    "request": redact_body(row["request"]),
                    "response": redact_body(row["response"]),
                }
                if any(new[name] != row[name] for name in new):
                    UpstreamCall.objects.filter(pk=row["id"]).update(**new)
                    changed += 1
            seen += len(rows)
            last = rows[-1]["id"]
