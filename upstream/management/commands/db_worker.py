"""`db_worker`: django-tasks-db's worker, made to outlive the database (upstream/liveness).

Same options as the library's command, plus `--heartbeat-file`. It takes the library's name
(the `upstream` app is listed before django_tasks_db), so every existing start-up line gets it.
"""

from __future__ import annotations

import logging
import os
from argparse import ArgumentParser
from pathlib import Path

from django.core.management.base import CommandError
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands.db_worker import Command as LibraryCommand

from upstream.liveness.heartbeat import Heartbeat, worker_id_default
from upstream.liveness.worker import ResilientWorker

logger = logging.getLogger("django_tasks_db")


class Command(LibraryCommand):
    help = (
        "Run a database task worker that waits for the database when it goes away, writes a "
        "heartbeat, and puts the periodic sweep and syncs back when they are missing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        # host:pid:random, like the runner's holders, rather than the library's 32 random letters.
        parser.set_defaults(worker_id=worker_id_default())
        parser.add_argument(
            "--heartbeat-file",
            type=Path,
            help="touch this file with every heartbeat (for `worker_alive --heartbeat-file`)",
        )

    def handle(
        self,
        *,
        verbosity: int,
        queue_name: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        reload: bool,
        max_tasks: int | None,
        worker_id: str,
        exclude_queues: str,
        heartbeat_file: Path | None = None,
        **options: object,
    ) -> None:
        # The library's handle, building our worker instead of its own.
        self.configure_logging(verbosity)
        if reload and batch:
            logger.warning("--reload and --batch cannot be specified together: no autoreload.")
            reload = False
        queue_names = queue_name.split(",")
        excluded = exclude_queues.split(",") if exclude_queues else []
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = ResilientWorker(
            heartbeat=Heartbeat(worker_id, file=heartbeat_file),
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=excluded,
        )
        if reload:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the reloader's child
            run_with_reloader(worker.run)
        else:
            worker.configure_signals()
            worker.run()
