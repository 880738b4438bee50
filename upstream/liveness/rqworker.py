"""The RQ worker class (`RQ["WORKER_CLASS"]` with TASKS_BACKEND=rq): RQ's own, with two changes.

- Its start puts back a periodic chain (sweep, syncs) that is missing, as `db_worker`'s does.
- It takes the scheduler over sooner. RQ runs scheduled tasks (the sweep's and syncs' next
  runs, deferred jobs) in one worker holding a lock; when that worker dies the others try to
  take the lock at their maintenance, every 10 minutes by default, so chains stood still that
  long (and an idle worker only looked up every 405 s). Every SCHEDULER_TAKEOVER_SECONDS
  instead.

RQ workers need no database to live: a job that meets an outage fails in Redis, and the sweep
(a task in Redis, whose chain keeps going) queues its job again once the leases run out.
"""

from __future__ import annotations

import logging
from typing import Any

from rq.worker import Worker as RQWorker

logger = logging.getLogger(__name__)

SCHEDULER_TAKEOVER_SECONDS = 30


class Worker(RQWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", SCHEDULER_TAKEOVER_SECONDS)
        super().__init__(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker blocks on Redis this long (RQ: worker_ttl - 15, 405 s) before its loop,
        # and so its maintenance, comes round again.
        return min(super().dequeue_timeout, SCHEDULER_TAKEOVER_SECONDS // 2)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        from upstream.tasks import ensure_periodic_chains

        try:
            queued = [name for name, done in ensure_periodic_chains().items() if done]
        except Exception:  # Redis refusing: the worker's own loop reports and retries it
            logger.exception("could not check the periodic chains")
        else:
            if queued:
                logger.info("periodic chains queued: %s", ", ".join(queued))
        return super().work(*args, **kwargs)
