"""Mask the personal data stored before it was masked (or before a field joined
upstream/redaction.py's lists): call log rows get their headers, bodies and URLs as a new call
would store them, and job items and calls named after a subscription ("90000600 Zeynep Kaya")
get its masked name. Idempotent; only rows that change are written."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandParser

from security.personal import masked_str
from subscriptions.models import Subscription
from upstream.models import JobItem, UpstreamCall
from upstream.redaction import redact, redact_body, redact_headers


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = urlencode(list(redact(dict(parse_qsl(parts.query, keep_blank_values=True))).items()))
    return urlunsplit(parts._replace(query=query))[:500]


class Command(BaseCommand):
    help = "Mask personal data (and secrets) stored before masking: call log and job targets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=500, help="rows read at a time")

    def handle(self, *args, batch: int, **options) -> None:
        seen, changed = self.calls(batch)
        self.stdout.write(f"{seen} calls read, {changed} masked")
        self.stdout.write(f"{self.targets(batch)} job items and calls renamed")

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

    def targets(self, batch: int) -> int:
        """Rows whose target text is a subscription's unmasked `str` (its job items and their
        calls); other texts about a subscription (a created record's number) stay."""
        label, renamed = Subscription._meta.label_lower, 0
        for sub in Subscription.objects.order_by("pk").iterator(chunk_size=batch):
            plain, masked = str(sub), masked_str(sub)
            if plain == masked:
                continue
            for model in (JobItem, UpstreamCall):
                renamed += model.objects.filter(
                    target_type=label, target_id=str(sub.pk), target_repr=plain
                ).update(target_repr=masked)
        return renamed
