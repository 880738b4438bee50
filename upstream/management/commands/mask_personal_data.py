"""Mask the personal data stored before it was masked (or before a field joined
upstream/redaction.py's lists): call log rows get their headers, bodies and URLs as a new call
would store them, and job items and calls named after a subscription ("90000600 Zeynep Kaya")
get its masked name, as do the titles of jobs that named a customer (a created payment record's,
a bulk move's). Idempotent; only rows that change are written."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Value
from django.db.models.functions import Replace

from billing.models import Invoice
from billing.pushes import INVOICE_ITEM_UPDATE_KIND
from security.personal import masked_str
from subscriptions.models import Subscription
from upstream.calls.redaction import Kind, mask_value, redact, redact_body, redact_headers
from upstream.models import Job, JobItem, UpstreamCall

# A bulk move's label: "#368 (Ali Can)", the target invoice and its customer.
_MOVE_LABEL = re.compile(r"^(?P<invoice>.*) \((?P<customer>[^()]*)\)$")


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
        self.stdout.write(f"{self.targets(batch)} job items and calls renamed")
        self.stdout.write(f"{self.move_titles()} job titles renamed")

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
            # A created payment record's job is titled after its subscription.
            Job.objects.filter(
                items__target_type=label, items__target_id=str(sub.pk), title__contains=plain
            ).update(title=Replace("title", Value(plain), Value(masked)))
        return renamed

    def move_titles(self) -> int:
        """Bulk moves' titles and parameters name the target invoice's customer; a person's name
        (an invoice's `full_name` without a company) is masked, a company's stays."""
        renamed = 0
        moves = Job.objects.filter(kind=INVOICE_ITEM_UPDATE_KIND, params__action="move")
        for job in moves.iterator():
            label = str(job.params.get("value") or "")
            match = _MOVE_LABEL.match(label)
            if not match:
                continue
            name = match["customer"]
            if not Invoice.objects.filter(full_name=name, company_name="").exists():
                continue
            masked = f"{match['invoice']} ({mask_value(Kind.NAME, name)})"
            job.title = job.title.replace(label, masked)
            job.params = {**job.params, "value": masked}
            job.save(update_fields=["title", "params"])
            renamed += 1
        return renamed
