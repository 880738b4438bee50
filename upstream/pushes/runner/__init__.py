"""The job runner: works through a job's items with bounded concurrency over one pooled session.

Threads only talk HTTP. The runner's thread claims items (with a lease), collects results and
writes them in batches: the calls, the mirror changes and the item states in one transaction, so
a local change never exists without the upstream's confirmation and its recorded call.

One module per stage, in the order an item meets them:

- `leases`: who holds an item or a record, and until when; an expired lease puts its item in doubt
- `claim`: a chunk of pending items claimed with their records, marked sending, re-checked
- `calls`: the pending call rows committed before a request leaves
- `work`: the HTTP side, in the pool's threads: push, or read back an item in doubt
- `flush`: a batch of results in one transaction: calls, mirror changes, items, counters
- `finalize`: a job closed once no item is left; a cancelled job's waiting items
- `loop`: `run_job`, which drives the stages and follows the upstream's breaker
- `sweeper`: what killed processes left behind: leases, quiet jobs, pending calls, task rows

The names below are the runner's interface. Its tuning constants stay in the stage that reads
them: patch them there (`upstream.pushes.runner.flush.IN_DOUBT_PAUSE`), not here.
"""

from upstream.pushes.runner.calls import CallReserver, JobRecorder, insert_call, reserve_calls
from upstream.pushes.runner.claim import claim_items
from upstream.pushes.runner.finalize import cancel_pending_items, job_finalize
from upstream.pushes.runner.flush import flush_results, hand_over
from upstream.pushes.runner.leases import item_holder, new_worker_id, release_expired_leases
from upstream.pushes.runner.loop import forget_queries, run_job
from upstream.pushes.runner.sweeper import (
    WorkerStopped,
    close_abandoned_tasks,
    requeue_stalled_jobs,
    settle_orphan_calls,
    sweep,
)
from upstream.pushes.runner.work import work_item

__all__ = [
    "CallReserver",
    "JobRecorder",
    "WorkerStopped",
    "cancel_pending_items",
    "claim_items",
    "close_abandoned_tasks",
    "flush_results",
    "forget_queries",
    "hand_over",
    "insert_call",
    "item_holder",
    "job_finalize",
    "new_worker_id",
    "release_expired_leases",
    "requeue_stalled_jobs",
    "reserve_calls",
    "run_job",
    "settle_orphan_calls",
    "sweep",
    "work_item",
]
