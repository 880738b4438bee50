"""The runner's machinery, shared by a single push (`upstream.pushes.single`) and a job over a
selection (`upstream.pushes.bulk`, whose `run_job` drives it chunk by chunk).

Threads only talk HTTP. The runner's thread claims items (with a lease), collects results and
writes them in batches: the calls, the mirror changes and the item states in one transaction, so
a local change never exists without the upstream's confirmation and its recorded call.

- `send`: a batch of claimed items on its way out and back: the pending call rows committed
  before a request leaves, the HTTP side in the pool's threads (push, or read back an item in
  doubt), and the flush of results in one transaction (calls, mirror changes, items, counters)
- `leases`: who holds an item or a record, and until when; an expired lease puts its item in doubt
- `finalize`: a job closed once no item is left; a cancelled job's waiting items
- `sweeper`: what killed processes left behind: leases, quiet jobs, pending calls, task rows

The names below are the runner's interface. Its tuning constants stay in the module that reads
them: patch them there (`upstream.pushes.runner.send.IN_DOUBT_PAUSE`), not here.
"""

from upstream.pushes.runner.finalize import cancel_pending_items, job_finalize
from upstream.pushes.runner.leases import item_holder, new_worker_id, release_expired_leases
from upstream.pushes.runner.send import (
    CallReserver,
    JobRecorder,
    flush_results,
    hand_over,
    insert_call,
    reserve_calls,
    work_item,
)
from upstream.pushes.runner.sweeper import (
    WorkerStopped,
    close_abandoned_tasks,
    requeue_stalled_jobs,
    settle_orphan_calls,
    sweep,
)

__all__ = [
    "CallReserver",
    "JobRecorder",
    "WorkerStopped",
    "cancel_pending_items",
    "close_abandoned_tasks",
    "flush_results",
    "hand_over",
    "insert_call",
    "item_holder",
    "job_finalize",
    "new_worker_id",
    "release_expired_leases",
    "requeue_stalled_jobs",
    "reserve_calls",
    "settle_orphan_calls",
    "sweep",
    "work_item",
]
