"""The loop: `run_job` drives a job's stages until no item is left for this worker.

This thread claims chunks, hands the items to a bounded pool of HTTP threads, serves their
requests for call rows, flushes results in batches and renews its leases. The upstream's breaker
is checked before every claim: while it is open nothing new is claimed. Cancel is checked before
every claim and, while items are out, every CANCEL_CHECK_EVERY: it stops the pool's threads from
taking up another item (`SendStop`), so only the requests in flight complete; the claimed items
not taken up are closed as cancelled at once. Items waiting out a long pause are left to a task
queued for their time.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from django.conf import settings
from django.db import reset_queries, transaction
from django.utils import timezone

from upstream.calls.breaker import (
    GO,
    PROBE,
    WAIT,
    BreakerGate,
    breaker_admit,
    breaker_release_probe,
    breaker_trip,
)
from upstream.models import Job, JobItem
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult, kind_for
from upstream.pushes.runner.calls import CallReserver
from upstream.pushes.runner.claim import claim_items
from upstream.pushes.runner.finalize import cancel_pending_items, job_finalize, take_cancel
from upstream.pushes.runner.flush import flush_results, hand_over
from upstream.pushes.runner.leases import (
    lease_length,
    new_worker_id,
    release_expired_leases,
    renew_leases,
)
from upstream.pushes.runner.work import SendStop, work_item
from upstream.pushes.selection import prepare_job

logger = logging.getLogger(__name__)

FLUSH_EVERY_SECONDS = 0.25
# How soon a worker thread's request for a pending call row is served.
SERVE_EVERY = 0.05
# Pending items that wait longer than this are left to a task queued for their time.
LONG_WAIT = timedelta(seconds=5)
# How often the job's cancel flag is read while items are out: one indexed read of the job's row,
# so a cancel takes hold within this (plus a flush in progress), not after the chunk.
CANCEL_CHECK_EVERY = 0.05


def run_job(job_id: int, *, worker_id: str | None = None) -> dict[str, int]:
    """Work through the job until no item is left for this worker; return the job's counts."""
    worker_id = worker_id or new_worker_id()
    job = Job.objects.get(pk=job_id)
    if job.state not in Job.ACTIVE_STATES:
        # Finished, or still waiting for its approval: a stray task must send nothing.
        return {"succeeded": job.succeeded, "failed": job.failed}
    handler = kind_for(job.kind)
    release_expired_leases(job_id)
    unprepared = not job.is_prepared
    Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.PREPARING if unprepared else Job.State.RUNNING,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    if unprepared:
        prepare_job(job_id)
    Job.objects.filter(pk=job_id, state=Job.State.PREPARING).update(state=Job.State.RUNNING)
    concurrency = max(1, handler.concurrency())
    chunk = max(settings.JOBS_CHUNK_SIZE, concurrency)
    lease_renew_every = settings.JOBS_LEASE_SECONDS / 3
    inflight: dict[Future[WorkResult], WorkItem] = {}
    buffer: list[WorkResult] = []
    exhausted = False
    last_flush = last_renew = last_cancel_check = time.monotonic()
    stop = SendStop()
    reserver = CallReserver()
    # The upstream's breaker as this run sees it; its threads ask it before every call.
    gate = BreakerGate(handler.service) if handler.service else None

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"job{job_id}") as pool:
            while True:
                if not exhausted and len(inflight) < concurrency * 2:
                    if _cancel_requested(job_id):
                        _stop_sending(job, worker_id, stop, inflight, handler.target_type)
                        exhausted = True
                    elif _follow_breaker(gate, worker_id, take_probe=True) == WAIT:
                        exhausted = (
                            True  # open: claim nothing; the items in flight come back paused
                        )
                    elif not (gate is not None and gate.mode == PROBE and inflight):
                        # Holding the probe: one item goes, the others wait for its answer.
                        limit = 1 if gate is not None and gate.mode == PROBE else chunk
                        claimed = claim_items(job, worker_id, limit, handler)
                        for item in claimed:
                            inflight[
                                pool.submit(work_item, job, handler, item, reserver, gate, stop)
                            ] = item
                        exhausted = not claimed
                if not inflight:
                    flush_results(job, handler, worker_id, buffer)
                    buffer = []
                    if exhausted:
                        # Items may be waiting out a pause (in doubt, a busy record, a
                        # Retry-After, the breaker): wait for a short one here; for a long one,
                        # come back later.
                        waiting = JobItem.objects.filter(job_id=job_id, state=JobItem.State.PENDING)
                        next_at = waiting.order_by("lease_until").values_list(
                            "lease_until", flat=True
                        )
                        if next_at.exists():
                            if _cancel_requested(job_id):
                                break
                            _follow_breaker(gate, worker_id, take_probe=False)
                            earliest = gate.until if gate is not None else None
                            earliest = earliest or next_at.first()
                            if earliest is not None and earliest - timezone.now() > LONG_WAIT:
                                _release_probe(gate, worker_id)
                                _defer(job, earliest)
                                return {"succeeded": job.succeeded, "failed": job.failed}
                            time.sleep(0.2)
                            exhausted = False
                            continue
                        break
                    continue
                reserver.serve()
                done, _pending = wait(
                    list(inflight), timeout=SERVE_EVERY, return_when=FIRST_COMPLETED
                )
                reserver.serve()
                now = time.monotonic()
                if not stop.stopped and now - last_cancel_check >= CANCEL_CHECK_EVERY:
                    last_cancel_check = now
                    if _cancel_requested(job_id):
                        _stop_sending(job, worker_id, stop, inflight, handler.target_type)
                        exhausted = True
                for future in done:
                    inflight.pop(future)
                    buffer.append(future.result())
                now = time.monotonic()
                # While the breaker is not plainly closed each answer is written at once: the
                # probe's decides whether the job goes on, a failure whether it stops.
                hurry = gate is not None and gate.mode != GO and bool(buffer)
                if hurry or len(buffer) >= chunk or now - last_flush >= FLUSH_EVERY_SECONDS:
                    flush_results(job, handler, worker_id, buffer)
                    buffer = []
                    last_flush = now
                    forget_queries()
                    if _follow_breaker(gate, worker_id, take_probe=False) == WAIT:
                        exhausted = True
                if now - last_renew >= lease_renew_every:
                    renew_leases(job_id, worker_id)
                    last_renew = now
    except Exception as error:
        # Our own code failed mid-run (the pool's requests have finished by now). Nothing may
        # stay held by a run that has stopped: its items go in doubt, keeping their records.
        logger.exception("job %s: the run failed; its items are handed over in doubt", job_id)
        _hand_over(job, handler, worker_id, error)
        raise
    finally:
        # A probe still held got no verdict recorded: the next sender may take it at once,
        # rather than after the probe's lease.
        _release_probe(gate, worker_id)

    _release_probe(gate, worker_id)
    job.refresh_from_db()
    if job.cancel_requested:
        cancel_pending_items(job)
        if job.cancel_taken_at is None:
            Job.objects.filter(pk=job_id).update(cancel_taken_at=timezone.now())
    job_finalize(job_id)
    job.refresh_from_db()
    forget_queries()
    return {"succeeded": job.succeeded, "failed": job.failed, "cancelled": job.cancelled}


def _cancel_requested(job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


def _stop_sending(
    job: Job,
    worker_id: str,
    stop: SendStop,
    inflight: dict[Future[WorkResult], WorkItem],
    target_type: str,
) -> None:
    """The cancel takes hold: no thread takes up another item; the claimed items no thread took
    up, and the waiting ones, are closed as cancelled now (their results are not written)."""
    started = stop.stop()
    unsent = [item.id for future, item in inflight.items() if item.id not in started]
    take_cancel(job, worker_id, unsent, target_type)


def _follow_breaker(gate: BreakerGate | None, holder: str, *, take_probe: bool) -> str | None:
    """Bring the gate in step with the upstream's breaker (this thread only: it reads and writes
    the database). A trip of the gate's own opens the breaker first. Returns the gate's mode."""
    if gate is None:
        return None
    if gate.take_trip():
        breaker_trip(gate.service)
    gate.follow(breaker_admit(gate.service, holder, take_probe=take_probe))
    return gate.mode


def _release_probe(gate: BreakerGate | None, holder: str) -> None:
    # A probe this run took and got no verdict for (nothing was sent): the next sender takes it.
    # A run that crashes leaves it to run out (breaker.probe_lease).
    if gate is not None:
        breaker_release_probe(gate.service, holder)


def _hand_over(job: Job, handler: JobKind, worker_id: str, error: Exception) -> None:
    """The items this run was sending may have reached the upstream: in doubt, each keeping its
    record, read back by the next run, queued after a lease (a bug that fails every run must
    not spin; a backend that cannot defer leaves it to the sweep)."""
    from upstream.tasks import job_run

    try:
        hand_over(job, handler.target_type, worker_id, error, sent=True)
        if job_run.get_backend().supports_defer:
            _defer(job, timezone.now() + lease_length())
    except Exception:
        # The database is gone too: the leases run out and the sweep settles the items.
        logger.exception("job %s: handing over its items failed", job.pk)


def forget_queries() -> None:
    """A worker lives for days: with DEBUG on, Django would keep the SQL of every item it ran."""
    if settings.DEBUG:
        reset_queries()


def _defer(job: Job, run_after: datetime) -> None:
    from upstream.pushes.jobs import job_enqueue

    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
        job_enqueue(job, run_after=run_after)
