"""The job runner: works through a job's items with bounded concurrency over one pooled session.

Threads only talk HTTP. This thread claims items (with a lease), collects results and writes
them in batches: the calls, the mirror changes and the item states in one transaction, so a
local change never exists without the upstream's confirmation and its recorded call.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .client import ListRecorder
from .errors import UpstreamError
from .handlers import JobHandler, WorkItem, WorkResult, handler_for
from .models import Job, JobItem, UpstreamCall
from .services import upstream_call_from_exchange

logger = logging.getLogger(__name__)

# An in-doubt item is read back at most this many times before it is reported in doubt.
MAX_ITEM_ATTEMPTS = 3
# How long an in-doubt item waits before it is read back, so a slow upstream can finish first.
IN_DOUBT_PAUSE = timedelta(seconds=2)
FLUSH_EVERY_SECONDS = 0.25


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease() -> timedelta:
    return timedelta(seconds=settings.JOBS_LEASE_SECONDS)


def claim_items(job: Job, worker_id: str, limit: int) -> list[WorkItem]:
    """Mark up to `limit` pending items as ours, with a lease, in one short transaction."""
    now = timezone.now()
    with transaction.atomic():
        pending = (
            JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .order_by("position")
        )
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        rows = list(pending.values("id", "target_id", "target_repr", "payload", "in_doubt")[:limit])
        if rows:
            JobItem.objects.filter(id__in=[r["id"] for r in rows]).update(
                state=JobItem.State.SENDING, claimed_by=worker_id, lease_until=now + _lease()
            )
    return [WorkItem(**row) for row in rows]


def _work(handler: JobHandler, item: WorkItem) -> WorkResult:
    recorder = ListRecorder()
    client = handler.make_client(recorder)
    try:
        if item.in_doubt:
            try:
                data = handler.settle(client, item)
            except UpstreamError as error:
                # Still unknown whether the first push landed: keep it in doubt, send nothing.
                return WorkResult(
                    item,
                    JobItem.Outcome.IN_DOUBT,
                    message=_("Could not read the record back: %(error)s") % {"error": error},
                    upstream_code=error.upstream_code,
                    exchanges=recorder.exchanges,
                )
            if data is not None:
                return WorkResult(
                    item,
                    JobItem.Outcome.OK,
                    message=_("Confirmed by reading back from the upstream; not sent again."),
                    data=data,
                    exchanges=recorder.exchanges,
                )
        data = handler.push(client, item)
        last = recorder.exchanges[-1] if recorder.exchanges else None
        return WorkResult(
            item,
            JobItem.Outcome.OK,
            upstream_code=last.upstream_code if last else "",
            data=data,
            exchanges=recorder.exchanges,
        )
    except UpstreamError as error:
        return WorkResult(
            item,
            JobItem.Outcome.IN_DOUBT if error.in_doubt else error.outcome,
            message=str(error),
            upstream_code=error.upstream_code,
            exchanges=recorder.exchanges,
        )
    except Exception as error:
        # Our bug, not the upstream's: keep the traceback in the log and the item visibly failed,
        # so one bad record cannot stall the job or be retried blindly.
        logger.exception("job item %s crashed", item.id)
        return WorkResult(
            item,
            JobItem.Outcome.FAILED,
            message=_("Internal error (%(error)s); see the server log.")
            % {"error": type(error).__name__},
            exchanges=recorder.exchanges,
        )


def flush_results(job: Job, handler: JobHandler, worker_id: str, results: list[WorkResult]) -> None:
    """Write a batch of results: calls, mirror changes and item states, all in one transaction."""
    if not results:
        return
    now = timezone.now()
    with transaction.atomic():
        mine = JobItem.objects.filter(
            id__in=[r.item.id for r in results], claimed_by=worker_id, state=JobItem.State.SENDING
        )
        if connection.features.has_select_for_update:
            mine = mine.select_for_update()
        items = {
            pk: (attempts, call_id)
            for pk, attempts, call_id in mine.values_list("id", "attempts", "call_id")
        }
        # A result whose lease was taken over by another worker is not ours to write.
        results = [r for r in results if r.item.id in items]
        calls = []
        for r in results:
            for exchange in r.exchanges:
                calls.append(
                    upstream_call_from_exchange(
                        exchange,
                        actor_id=job.created_by_id,
                        job_id=job.pk,
                        job_item_id=r.item.id,
                        target_type=handler.target_type,
                        target_id=r.item.target_id,
                        target_repr=r.item.target_repr,
                    )
                )
        UpstreamCall.objects.bulk_create(calls, batch_size=500)
        last_call: dict[int, int] = {}
        for call in calls:
            last_call[call.job_item_id] = call.pk

        ok = [r for r in results if r.outcome == JobItem.Outcome.OK]
        if ok:
            handler.apply(ok)

        # Most results share their state, outcome and message: one UPDATE per such group, and
        # a bulk_update only for what differs per item (its call and result). Building one CASE
        # per field for every row costs more CPU than the pushes themselves.
        groups: dict[tuple, list[int]] = defaultdict(list)
        per_item = []
        succeeded = failed = 0
        for r in results:
            attempts, call_id = items[r.item.id]
            code = str(r.upstream_code)[:32]
            if r.outcome == JobItem.Outcome.IN_DOUBT and attempts + 1 < MAX_ITEM_ATTEMPTS:
                # Read it back a little later before anything is sent again.
                key = (JobItem.State.PENDING, "", True, r.message, code, now + IN_DOUBT_PAUSE, None)
            else:
                in_doubt = r.outcome == JobItem.Outcome.IN_DOUBT
                key = (JobItem.State.DONE, r.outcome, in_doubt, r.message, code, None, now)
                if r.outcome == JobItem.Outcome.OK:
                    succeeded += 1
                else:
                    failed += 1
            groups[key].append(r.item.id)
            per_item.append(
                JobItem(id=r.item.id, call_id=last_call.get(r.item.id, call_id), result=r.result)
            )
        for (state, outcome, in_doubt, message, code, lease, finished), ids in groups.items():
            JobItem.objects.filter(id__in=ids).update(
                state=state,
                outcome=outcome,
                in_doubt=in_doubt,
                message=message,
                upstream_code=code,
                lease_until=lease,
                finished_at=finished,
                claimed_by="",
                attempts=F("attempts") + 1,
            )
        JobItem.objects.bulk_update(per_item, ["call", "result"], batch_size=500)
        Job.objects.filter(pk=job.pk).update(
            succeeded=F("succeeded") + succeeded,
            failed=F("failed") + failed,
            heartbeat_at=now,
        )


def cancel_pending_items(job: Job) -> int:
    return JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING).update(
        state=JobItem.State.DONE,
        outcome=JobItem.Outcome.CANCELLED,
        message=_("Cancelled before it was sent."),
        finished_at=timezone.now(),
        lease_until=None,
    )


def job_finalize(job_id: int) -> bool:
    """Close the job if no item is left to do; the counters are recounted from the items."""
    with transaction.atomic():
        jobs = Job.objects.filter(pk=job_id)
        if connection.features.has_select_for_update:
            jobs = jobs.select_for_update()
        job = jobs.get()
        if job.is_finished:
            return True
        items = JobItem.objects.filter(job_id=job_id)
        if items.filter(state__in=[JobItem.State.PENDING, JobItem.State.SENDING]).exists():
            return False
        counts = dict(
            items.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n")
        )
        job.succeeded = counts.get(JobItem.Outcome.OK, 0)
        job.failed = sum(counts.get(o, 0) for o in JobItem.FAILED_OUTCOMES)
        job.cancelled = counts.get(JobItem.Outcome.CANCELLED, 0)
        if job.cancel_requested and job.cancelled:
            job.state = Job.State.CANCELLED
        elif job.failed == 0:
            job.state = Job.State.SUCCEEDED
        elif job.succeeded == 0:
            job.state = Job.State.FAILED
        else:
            job.state = Job.State.PARTIALLY_FAILED
        job.finished_at = timezone.now()
        job.save(update_fields=["succeeded", "failed", "cancelled", "state", "finished_at"])
        try:
            handler = handler_for(job.kind)
        except LookupError:
            handler = None
        if handler is not None:
            handler.finished(job)
    return True


def release_expired_leases(job_id: int | None = None) -> int:
    """Items whose worker vanished mid-push may have reached the upstream: mark them in doubt."""
    expired = JobItem.objects.filter(state=JobItem.State.SENDING, lease_until__lt=timezone.now())
    if job_id is not None:
        expired = expired.filter(job_id=job_id)
    return expired.update(
        state=JobItem.State.PENDING,
        in_doubt=True,
        claimed_by="",
        lease_until=None,
        message=_("The worker stopped while sending; it will be read back before any resend."),
    )


def run_job(job_id: int, *, worker_id: str | None = None) -> dict[str, int]:
    """Work through the job until no item is left for this worker; return the job's counts."""
    worker_id = worker_id or new_worker_id()
    job = Job.objects.get(pk=job_id)
    if job.is_finished:
        return {"succeeded": job.succeeded, "failed": job.failed}
    handler = handler_for(job.kind)
    release_expired_leases(job_id)
    Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    concurrency = max(1, handler.concurrency())
    chunk = max(settings.JOBS_CHUNK_SIZE, concurrency)
    lease_renew_every = settings.JOBS_LEASE_SECONDS / 3
    inflight: dict[Future[WorkResult], WorkItem] = {}
    buffer: list[WorkResult] = []
    exhausted = False
    last_flush = last_renew = time.monotonic()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"job{job_id}") as pool:
        while True:
            if not exhausted and len(inflight) < concurrency * 2:
                if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
                    exhausted = True
                else:
                    claimed = claim_items(job, worker_id, chunk)
                    for item in claimed:
                        inflight[pool.submit(_work, handler, item)] = item
                    exhausted = not claimed
            if not inflight:
                flush_results(job, handler, worker_id, buffer)
                buffer = []
                if exhausted:
                    # In-doubt items may be waiting out their pause: look again until none is.
                    if JobItem.objects.filter(job_id=job_id, state=JobItem.State.PENDING).exists():
                        if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
                            break
                        time.sleep(0.2)
                        exhausted = False
                        continue
                    break
                continue
            done, _pending = wait(
                list(inflight), timeout=FLUSH_EVERY_SECONDS, return_when=FIRST_COMPLETED
            )
            for future in done:
                inflight.pop(future)
                buffer.append(future.result())
            now = time.monotonic()
            if len(buffer) >= chunk or now - last_flush >= FLUSH_EVERY_SECONDS:
                flush_results(job, handler, worker_id, buffer)
                buffer = []
                last_flush = now
            if now - last_renew >= lease_renew_every:
                JobItem.objects.filter(claimed_by=worker_id, state=JobItem.State.SENDING).update(
                    lease_until=timezone.now() + _lease()
                )
                Job.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())
                last_renew = now

    job.refresh_from_db()
    if job.cancel_requested:
        cancel_pending_items(job)
    job_finalize(job_id)
    job.refresh_from_db()
    return {"succeeded": job.succeeded, "failed": job.failed, "cancelled": job.cancelled}


def sweep(*, enqueue: bool = True) -> dict[str, int]:
    """Reclaim expired leases and re-enqueue jobs whose worker has gone quiet."""
    from .services import job_enqueue

    released = release_expired_leases()
    stale_before = timezone.now() - _lease()
    requeued = 0
    candidates = Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, created_at__lt=stale_before)
    )
    for job in candidates:
        live = JobItem.objects.filter(
            job=job, state=JobItem.State.SENDING, lease_until__gte=timezone.now()
        ).exists()
        if live:
            continue
        if not JobItem.objects.filter(job=job, state=JobItem.State.PENDING).exists():
            job_finalize(job.pk)
            continue
        if enqueue and not _task_waiting(job):
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
                job_enqueue(job)
            requeued += 1
    return {"released": released, "requeued": requeued}


def _task_waiting(job: Job) -> bool:
    """Is the job's last task still waiting in the queue (so a new one would only duplicate it)?"""
    if not job.task_id:
        return False
    from django_tasks import TaskResultStatus, default_task_backend

    try:
        return default_task_backend.get_result(job.task_id).status == TaskResultStatus.READY
    except Exception:
        return False
