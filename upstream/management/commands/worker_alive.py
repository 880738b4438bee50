"""`worker_alive`: is a task worker alive? For an orchestrator's liveness probe, or monitoring."""

from __future__ import annotations

import socket
import time
from argparse import ArgumentParser
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from upstream.liveness.heartbeat import worker_alive


class Command(BaseCommand):
    help = (
        "Exit 0 when a task worker has been seen within --max-age seconds (default "
        "WORKER_STALE_SECONDS), 1 when not. --heartbeat-file checks the file a db_worker "
        "touches (no database needed: a worker waiting out a database outage stays alive); "
        "otherwise the workers' heartbeats are read (RQ: from Redis): --worker-id one, "
        "--any-host every host's, by default this host's. Exit 2 when they cannot be read."
    )
    # A probe must answer while the database is away: no system checks, no migration check.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--heartbeat-file", type=Path)
        parser.add_argument("--worker-id")
        parser.add_argument("--any-host", action="store_true")
        parser.add_argument("--max-age", type=float, default=None)

    def handle(
        self,
        *args: object,
        heartbeat_file: Path | None,
        worker_id: str | None,
        any_host: bool,
        max_age: float | None,
        **options: object,
    ) -> None:
        max_age = max_age or float(settings.WORKER_STALE_SECONDS)
        if heartbeat_file is not None:
            try:
                age = time.time() - heartbeat_file.stat().st_mtime
            except OSError as error:
                self.stderr.write(f"no heartbeat file: {error}")
                raise SystemExit(1) from error
            if age > max_age:
                self.stderr.write(f"stale: last heartbeat {age:.0f} s ago (limit {max_age:.0f})")
                raise SystemExit(1)
            self.stdout.write(f"alive: last heartbeat {age:.0f} s ago")
            return
        hostname = None if any_host or worker_id else socket.gethostname()
        try:
            seen = worker_alive(worker_id=worker_id, hostname=hostname, max_age=max_age)
        except Exception as error:  # the database, or Redis (RQ), is away: cannot tell
            raise CommandError(
                f"cannot read the workers' heartbeats: {error}", returncode=2
            ) from error
        where = worker_id or (hostname and f"on {hostname}") or "anywhere"
        if not seen:
            self.stderr.write(f"no task worker seen {where} in the last {max_age:.0f} s")
            raise SystemExit(1)
        for worker in seen:
            self.stdout.write(f"alive: {worker.name} ({worker.state}), seen {worker.seen_at}")
