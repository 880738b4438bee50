"""Mask the personal data stored before it was masked (or before a field joined
upstream/calls/redaction.py's lists): call log rows get their headers, bodies and URLs as a new
call would store them; record history rows their personal fields' values (names, e-mails,
phones: old, new and a created or deleted record's snapshot); then each vertical's registered
step masks the texts it wrote about its customers (job items named after a subscription, titles
of jobs that named a customer). Idempotent; only rows that change are written."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from upstream.calls.remask import calls_remask, masked_url
from upstream.history.remask import history_remask
from upstream.registry import remasks

__all__ = ["Command", "masked_url"]


class Command(BaseCommand):
    help = "Mask personal data (and secrets) stored before masking: call log, history, job targets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=500, help="rows read at a time")

    def handle(self, *args, batch: int, **options) -> None:
        seen, changed = calls_remask(batch)
        self.stdout.write(f"{seen} calls read, {changed} masked")
        # What the verticals wrote about their customers (upstream.registry.register_remask).
        for what, remask in remasks().items():
            self.stdout.write(f"{remask(batch)} {what}")
        self.stdout.write(f"{history_remask(batch)} history rows masked")
