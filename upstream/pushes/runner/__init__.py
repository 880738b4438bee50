"""The job runner: works through a job's items with bounded concurrency over one pooled session.

Threads only talk HTTP. This thread claims items (with a lease), collects results and writes
them in batches: the calls, the mirror changes and the item states in one transaction, so a
local change never exists without the upstream's confirmation and its recorded call.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, reset_queries, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.calls.breaker import (
    GO,
    PROBE,
    WAIT,
    BreakerGate,
    BreakerOpen,
    breaker_admit,
    breaker_record,
    breaker_release_probe,
    breaker_trip,
)
from upstream.calls.client import Exchange
from upstream.calls.errors import UpstreamError, UpstreamResponseError
from upstream.calls.log import upstream_call_from_exchange
from upstream.console.notices import job_finished_announce
from upstream.history.changes import history_source
from upstream.l10n.stored import message_fields, text
from upstream.models import Job, JobItem, RecordChange, RecordClaim, UpstreamCall
from upstream.pushes.approvals import expire_approvals
from upstream.pushes.claims import claim_records, release_records, renew_claims
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult, kind_for
from upstream.pushes.selection import prepare_job

logger = logging.getLogger(__name__)

# An in-doubt item is read back at most this many times before it is reported in doubt.
MAX_ITEM_ATTEMPTS = 3
# How long an in-doubt item waits before it is read back, so a slow upstream can finish first.
IN_DOUBT_PAUSE = timedelta(seconds=2)
FLUSH_EVERY_SECONDS = 0.25
# How soon a worker thread's request for a pending call row is served.
SERVE_EVERY = 0.05
# A record another push holds is looked at again after this pause.
CLAIM_BUSY_PAUSE = timedelta(seconds=1)
# Pending items that wait longer than this are left to a task queued for their time.
LONG_WAIT = timedelta(seconds=5)
# A Retry-After up to this long re-schedules the item; a longer one fails it with the reason.
MAX_RETRY_AFTER = 3600


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease() -> timedelta:
    return timedelta(seconds=settings.JOBS_LEASE_SECONDS)


def claim_items(
    job: Job, worker_id: str, limit: int, handler: JobKind | None = None
) -> list[WorkItem]:
    """Claim up to `limit` pending items and their records, in one short transaction.

    In that transaction each item's record is claimed (one push at a time per record), a
    pending call-log row is committed for the write it will send, and the handler re-checks the
    record against what was previewed. Items whose record another push holds stay pending and
    are looked at again a moment later.
    """
    handler = handler or kind_for(job.kind)
    now = timezone.now()
    lease_until = now + _lease()
    with transaction.atomic():
        pending = (
            JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .order_by("position")
        )
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        rows = list(pending.values("id", "target_id", "target_repr", "payload", "in_doubt")[:limit])
        if not rows:
            return []
        # An in-doubt item kept its record claimed while it waited: it takes its claim back.
        RecordClaim.objects.filter(holder__in=[item_holder(r["id"]) for r in rows]).delete()
        ours = (
            claim_records(
                handler.target_type,
                [r["target_id"] for r in rows],
                holder=worker_id,
                until=lease_until,
                job_items={r["target_id"]: r["id"] for r in rows},
            )
            if handler.claims_records
            else {r["target_id"] for r in rows}
        )
        busy = [r["id"] for r in rows if r["target_id"] not in ours]
        rows = [r for r in rows if r["target_id"] in ours]
        held = handler.busy([WorkItem(**r) for r in rows]) if rows else set()
        if held:
            release_records(
                holder=worker_id,
                target_type=handler.target_type,
                target_ids=[r["target_id"] for r in rows if r["id"] in held],
            )
            busy += list(held)
            rows = [r for r in rows if r["id"] not in held]
        if busy:
            JobItem.objects.filter(id__in=busy).update(
                lease_until=now + CLAIM_BUSY_PAUSE,
                **message_fields(
                    text(gettext_noop("Waiting: another push of this record is in progress."))
                ),
            )
        if not rows:
            return []
        JobItem.objects.filter(id__in=[r["id"] for r in rows]).update(
            state=JobItem.State.SENDING, claimed_by=worker_id, lease_until=lease_until
        )
        items = [WorkItem(**row) for row in rows]
        stale = handler.recheck(items)
        call_ids = _reserve_calls(job, handler, [i for i in items if i.id not in stale], now)
    return [
        replace(item, stale_reason=stale.get(item.id, ""), call_id=call_ids.get(item.id))
        for item in items
    ]


def _reserve_calls(
    job: Job, handler: JobKind, items: list[WorkItem], now: datetime
) -> dict[int, int]:
    """Commit one pending call-log row per item for the write it is about to send."""
    if not handler.operation or not items:
        return {}
    calls = UpstreamCall.objects.bulk_create(
        [
            UpstreamCall(
                service=handler.service,
                operation=handler.operation,
                method="",
                url="",
                outcome="pending",
                mutating=True,
                created_at=now,
                actor_id=job.created_by_id,
                job_id=job.pk,
                job_item_id=item.id,
                target_type=handler.target_type,
                target_id=item.target_id,
                target_repr=item.target_repr[:200],
            )
            for item in items
        ],
        batch_size=500,
    )
    if any(call.pk is None for call in calls):
        # Backends that do not return ids from a bulk insert: look them up.
        by_item = dict(
            UpstreamCall.objects.filter(
                job_item_id__in=[i.id for i in items], outcome="pending", created_at=now
            ).values_list("job_item_id", "id")
        )
        return by_item
    return {call.job_item_id: call.pk for call in calls}


class CallReserver:
    """Commits pending call rows for requests that worker threads are about to send.

    Worker threads never touch the database: a thread that needs a pending row (a read-back, a
    retried write) asks the runner's thread, which inserts and commits it, then lets it send.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[UpstreamCall, threading.Event]] = (
            queue.SimpleQueue()
        )

    def __call__(self, call: UpstreamCall) -> int:
        done = threading.Event()
        self._requests.put((call, done))
        if not done.wait(timeout=60) or call.pk is None:
            raise RuntimeError("the runner did not record the call before sending")
        return call.pk

    def serve(self) -> None:
        while True:
            try:
                call, done = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                call.save(force_insert=True)
            finally:
                done.set()


def insert_call(call: UpstreamCall) -> int:
    call.save(force_insert=True)
    return call.pk


class JobRecorder:
    """Where an item's exchanges go.

    The item's write uses the pending row committed when the item was claimed; any other
    request (a retried attempt, a read-back) gets its own pending row committed before it
    leaves. Every row is finished with the results. With a gate, each call first asks the
    upstream's breaker (BreakerOpen: nothing is recorded or sent) and tells it the answer.
    """

    def __init__(
        self,
        job: Job,
        handler: JobKind,
        item: WorkItem,
        reserve: Callable[[UpstreamCall], int] = insert_call,
        gate: BreakerGate | None = None,
    ) -> None:
        self.job = job
        self.handler = handler
        self.item = item
        self.reserved = item.call_id
        self.reserve = reserve
        self.gate = gate
        self.exchanges: list[Exchange] = []
        self.wrote = False

    def started(self, exchange: Exchange) -> None:
        if self.gate is not None:
            self.gate.before(exchange)
        if exchange.mutating:
            self.wrote = True
            if self.reserved is not None:
                exchange.call_id, self.reserved = self.reserved, None
                return
        exchange.call_id = self.reserve(
            upstream_call_from_exchange(
                exchange,
                actor_id=self.job.created_by_id,
                job_id=self.job.pk,
                job_item_id=self.item.id,
                target_type=self.handler.target_type,
                target_id=self.item.target_id,
                target_repr=self.item.target_repr,
            )
        )

    def finished(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if self.gate is not None:
            self.gate.after(exchange)

    @property
    def may_have_applied(self) -> bool:
        """A write of this item went out and was confirmed, or failed after it may have landed."""
        return any(e.mutating and (e.outcome == "ok" or e.may_have_applied) for e in self.exchanges)


def _work(
    job: Job,
    handler: JobKind,
    item: WorkItem,
    reserve: Callable[[UpstreamCall], int] = insert_call,
    gate: BreakerGate | None = None,
) -> WorkResult:
    return _work_item(handler, item, JobRecorder(job, handler, item, reserve, gate))


def _work_item(handler: JobKind, item: WorkItem, recorder: JobRecorder) -> WorkResult:
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
                    message=text(
                        gettext_noop("Could not read the record back: %(error)s"), error=error
                    ),
                    upstream_code=error.upstream_code,
                    exchanges=recorder.exchanges,
                    error=error,
                )
            if data is not None:
                return WorkResult(
                    item,
                    JobItem.Outcome.OK,
                    message=text(
                        gettext_noop("Confirmed by reading back from the upstream; not sent again.")
                    ),
                    data=data,
                    exchanges=recorder.exchanges,
                )
        if item.stale_reason:
            return WorkResult(
                item,
                JobItem.Outcome.SKIPPED,
                message=item.stale_reason,
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
    except BreakerOpen as stop:
        # The breaker kept this call back: the item waits as pending, and is read back first if
        # an earlier call of it may have been applied.
        return WorkResult(
            replace(item, in_doubt=item.in_doubt or recorder.may_have_applied),
            JobItem.Outcome.NONE,
            message=str(stop),
            exchanges=recorder.exchanges,
            paused=True,
        )
    except UpstreamError as error:
        retry_after = error.retry_after if isinstance(error, UpstreamResponseError) else None
        if retry_after is not None and not error.in_doubt and retry_after <= MAX_RETRY_AFTER:
            return WorkResult(
                item,
                JobItem.Outcome.NONE,
                message=text(
                    gettext_noop("%(error)s Sent again after %(seconds)s s."),
                    error=error,
                    seconds=int(retry_after),
                ),
                upstream_code=error.upstream_code,
                exchanges=recorder.exchanges,
                retry_after=retry_after,
                error=error,
            )
        return WorkResult(
            item,
            JobItem.Outcome.IN_DOUBT if error.in_doubt else error.outcome,
            message=str(error),  # a Text when the client wrote it (upstream.l10n.stored)
            upstream_code=error.upstream_code,
            exchanges=recorder.exchanges,
            error=error,
        )
    except Exception as error:
        # Our bug, not the upstream's: keep the traceback in the log. Once a write went out it
        # may have been applied, so the item is in doubt (read back, never resent blindly).
        logger.exception("job item %s crashed", item.id)
        message = _("Internal error (%(error)s); see the server log.") % {
            "error": type(error).__name__
        }
        if recorder.wrote:
            return WorkResult(
                item,
                JobItem.Outcome.IN_DOUBT,
                message=text(
                    gettext_noop(
                        "%(error)s The change may have reached the upstream; it will be read back."
                    ),
                    error=message,
                ),
                exchanges=recorder.exchanges,
                error=error,
            )
        return WorkResult(
            item, JobItem.Outcome.FAILED, message=message, exchanges=recorder.exchanges, error=error
        )


def flush_results(job: Job, handler: JobKind, worker_id: str, results: list[WorkResult]) -> None:
    """Write a batch of results: calls, mirror changes and item states, all in one transaction.

    The records' claims are let go in the same transaction, so the next push of a record sees
    the mirror as this one left it.
    """
    if not results:
        return
    exchanges = [e for r in results for e in r.exchanges]
    now = timezone.now()
    with transaction.atomic():
        mine = JobItem.objects.filter(
            id__in=[r.item.id for r in results], claimed_by=worker_id, state=JobItem.State.SENDING
        )
        if connection.features.has_select_for_update:
            mine = mine.select_for_update()
        items = dict(mine.values_list("id", "attempts"))
        all_targets = [r.item.target_id for r in results]
        # A result whose lease was taken over by another worker is not ours to write.
        results = [r for r in results if r.item.id in items]
        finished_calls, new_calls = [], []
        used_reserved: set[int] = set()
        for r in results:
            for exchange in r.exchanges:
                call = upstream_call_from_exchange(
                    exchange,
                    actor_id=job.created_by_id,
                    job_id=job.pk,
                    job_item_id=r.item.id,
                    target_type=handler.target_type,
                    target_id=r.item.target_id,
                    target_repr=r.item.target_repr,
                )
                if exchange.call_id is not None:
                    call.pk = exchange.call_id
                    used_reserved.add(exchange.call_id)
                    finished_calls.append(call)
                else:
                    new_calls.append(call)
        new_calls += _finish_reserved_calls(finished_calls)
        UpstreamCall.objects.bulk_create(new_calls, batch_size=500)
        unused = [
            r.item.call_id
            for r in results
            if r.item.call_id is not None and r.item.call_id not in used_reserved
        ]
        if unused:
            # Reserved for a write that was never sent (read back, skipped): no call happened.
            UpstreamCall.objects.filter(pk__in=unused, outcome="pending", url="").delete()
        called = {call.job_item_id for call in finished_calls + new_calls}

        # Each record's change is kept with the push: who, why, the job and the item's last call.
        last_call: dict[tuple[str, str], tuple] = {}
        for call in finished_calls + new_calls:
            key = (handler.target_type, str(call.target_id))
            if call.pk is not None and (
                key not in last_call or last_call[key] < (call.created_at, call.pk)
            ):
                last_call[key] = (call.created_at, call.pk)
        why = {
            "actor_id": job.created_by_id,
            "reason": job.reason,
            "job_id": job.pk,
            "calls": {key: pk for key, (_at, pk) in last_call.items()},
        }
        with history_source(RecordChange.Source.OPERATION, **why):
            _apply(handler, [r for r in results if r.outcome == JobItem.Outcome.OK])
        read_back = [r for r in results if getattr(r.error, "read_back", None) is not None]
        if read_back:
            # A refused push read its record back: the mirror follows what the upstream holds.
            with history_source(RecordChange.Source.CALL, **why):
                handler.apply_read_back(read_back)

        # Most results share their state, outcome, message and result: one UPDATE per such group.
        # Building one CASE per field for every row (bulk_update) costs more CPU than the pushes.
        groups: dict[tuple, list[int]] = defaultdict(list)
        by_result: dict[str, list[int]] = defaultdict(list)
        with_call: list[int] = []
        succeeded = failed = skipped = 0
        keep_claimed: list[WorkItem] = []
        for r in results:
            attempts = items[r.item.id]
            code = str(r.upstream_code)[:32]
            if r.paused:
                # The breaker is open: pending again, claimed once it lets calls through. Not an
                # attempt; an item that may have been applied keeps its record, as below.
                key = (JobItem.State.PENDING, "", r.item.in_doubt, r.message, code, None, None, 0)
                if r.item.in_doubt:
                    keep_claimed.append(r.item)
            elif r.retry_after is not None:
                # The upstream asked us to wait: nothing was applied, send it again later.
                lease = now + timedelta(seconds=r.retry_after)
                key = (JobItem.State.PENDING, "", r.item.in_doubt, r.message, code, lease, None, 1)
            elif r.outcome == JobItem.Outcome.IN_DOUBT and attempts + 1 < MAX_ITEM_ATTEMPTS:
                # Read it back a little later before anything is sent again; until then the
                # record stays claimed, so no other push goes out on a mirror that may be wrong.
                lease = now + IN_DOUBT_PAUSE
                key = (JobItem.State.PENDING, "", True, r.message, code, lease, None, 1)
                keep_claimed.append(r.item)
            else:
                in_doubt = r.outcome == JobItem.Outcome.IN_DOUBT
                message = r.message
                if in_doubt:
                    # Say what happens next: nothing, until someone asks for a read-back.
                    message = text(
                        gettext_noop(
                            "%(error)s Reading back did not settle it, so nothing was sent again. "
                            "“Retry failed items” reads the record back first and sends only if "
                            "the change is not there."
                        ),
                        error=message,
                    )
                key = (JobItem.State.DONE, r.outcome, in_doubt, message, code, None, now, 1)
                if r.outcome == JobItem.Outcome.OK:
                    succeeded += 1
                elif r.outcome == JobItem.Outcome.SKIPPED:
                    skipped += 1
                else:
                    failed += 1
            groups[key].append(r.item.id)
            by_result[json.dumps(r.result, sort_keys=True, default=str)].append(r.item.id)
            if r.item.id in called:
                with_call.append(r.item.id)
        for (
            state,
            outcome,
            in_doubt,
            message,
            code,
            lease,
            finished,
            tried,
        ), ids in groups.items():
            JobItem.objects.filter(id__in=ids).update(
                state=state,
                outcome=outcome,
                in_doubt=in_doubt,
                **message_fields(message),
                upstream_code=code,
                lease_until=lease,
                finished_at=finished,
                claimed_by="",
                attempts=F("attempts") + tried,
            )
        for result, ids in by_result.items():
            JobItem.objects.filter(id__in=ids).update(result=json.loads(result))
        if with_call:
            # The item's last call: the newest row written for it.
            JobItem.objects.filter(id__in=with_call).update(
                call_id=Subquery(
                    UpstreamCall.objects.filter(job_item_id=OuterRef("pk"))
                    .order_by("-created_at", "-id")
                    .values("id")[:1]
                )
            )
        for r in read_back:
            if r.error.call_id is not None:
                # The refused write is the item's call, not the read-back that followed it.
                JobItem.objects.filter(id=r.item.id).update(call_id=r.error.call_id)
        Job.objects.filter(pk=job.pk).update(
            succeeded=F("succeeded") + succeeded,
            failed=F("failed") + failed,
            skipped=F("skipped") + skipped,
            heartbeat_at=now,
        )
        for item in keep_claimed:
            RecordClaim.objects.filter(
                holder=worker_id, target_type=handler.target_type, target_id=item.target_id
            ).update(holder=item_holder(item.id), job_item_id=item.id, until=now + _lease())
        release_records(holder=worker_id, target_type=handler.target_type, target_ids=all_targets)
    # After the commit, in a short transaction of its own: the breaker's row is shared by every
    # process and must not wait for this flush's locks.
    breaker_record(exchanges)


def _apply(handler: JobKind, ok: list[WorkResult]) -> None:
    """Write confirmed changes to the mirror; a result whose write fails does not take the
    others (or the call log) with it: it is kept in doubt, to be read back and applied again."""
    if not ok:
        return
    try:
        with transaction.atomic():
            handler.apply(ok)
        return
    except Exception:
        logger.exception("applying %s results failed; applying them one by one", len(ok))
    for r in ok:
        try:
            with transaction.atomic():
                handler.apply([r])
        except Exception as error:
            logger.exception("applying the result of job item %s failed", r.item.id)
            r.outcome = JobItem.Outcome.IN_DOUBT
            r.error = error
            r.message = _(
                "The upstream confirmed the change, but writing it here failed (%(error)s); "
                "it will be read back and written again."
            ) % {"error": type(error).__name__}


def _finish_reserved_calls(calls: list[UpstreamCall]) -> list[UpstreamCall]:
    """Finish pending call rows in place; return the calls whose row is no longer pending.

    Each pending row is replaced, in the caller's transaction, by its finished row under the
    same id: one DELETE and one INSERT instead of an UPDATE with a CASE per field and row. A row
    the sweep already closed (its process looked dead) keeps its note, and the real answer is
    added as a row of its own.
    """
    if not calls:
        return []
    pending = set(
        UpstreamCall.objects.filter(pk__in=[c.pk for c in calls], outcome="pending").values_list(
            "pk", flat=True
        )
    )
    UpstreamCall.objects.filter(pk__in=pending).delete()
    finished = [c for c in calls if c.pk in pending]
    UpstreamCall.objects.bulk_create(finished, batch_size=500)
    late = [c for c in calls if c.pk not in pending]
    for call in late:
        call.pk = None
    return late


def item_holder(item_id: int) -> str:
    """Who holds a record claim kept for an item between its attempts (in doubt)."""
    return f"item:{item_id}"


def cancel_pending_items(job: Job) -> int:
    pending = JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING)
    RecordClaim.objects.filter(
        holder__in=[item_holder(pk) for pk in pending.values_list("pk", flat=True)]
    ).delete()
    return pending.update(
        state=JobItem.State.DONE,
        outcome=JobItem.Outcome.CANCELLED,
        **message_fields(text(gettext_noop("Cancelled before it was sent."))),
        finished_at=timezone.now(),
        lease_until=None,
    )


def job_finalize(job_id: int, *, announce: bool = True) -> bool:
    """Close the job if no item is left to do; the counters are recounted from the items.

    Its creator is told (a notice and an e-mail) unless `announce` is off: a single push answered
    in its own request has said how it went already.
    """
    with transaction.atomic():
        jobs = Job.objects.filter(pk=job_id)
        if connection.features.has_select_for_update:
            jobs = jobs.select_for_update()
        job = jobs.get()
        if job.is_finished:
            return True
        if not job.is_prepared:
            return False  # items of its frozen selection are still to be written
        items = JobItem.objects.filter(job_id=job_id)
        if items.filter(state__in=[JobItem.State.PENDING, JobItem.State.SENDING]).exists():
            return False
        counts = dict(
            items.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n")
        )
        job.succeeded = counts.get(JobItem.Outcome.OK, 0)
        job.failed = sum(counts.get(o, 0) for o in JobItem.FAILED_OUTCOMES)
        job.cancelled = counts.get(JobItem.Outcome.CANCELLED, 0)
        job.skipped = counts.get(JobItem.Outcome.SKIPPED, 0)
        if job.cancel_requested and job.cancelled:
            job.state = Job.State.CANCELLED
        elif job.failed == 0:
            job.state = Job.State.SUCCEEDED
        elif job.succeeded == 0:
            job.state = Job.State.FAILED
        else:
            job.state = Job.State.PARTIALLY_FAILED
        job.finished_at = timezone.now()
        job.save(
            update_fields=["succeeded", "failed", "cancelled", "skipped", "state", "finished_at"]
        )
        try:
            handler = kind_for(job.kind)
        except LookupError:
            handler = None
        if handler is not None:
            handler.finished(job)
        if announce:
            job_finished_announce(job)
    return True


def release_expired_leases(job_id: int | None = None) -> int:
    """Items whose worker vanished mid-push may have reached the upstream: mark them in doubt.

    Their record claims go with them (they ran out together), so the settling read-back can
    claim the record again at once.
    """
    expired = JobItem.objects.filter(state=JobItem.State.SENDING, lease_until__lt=timezone.now())
    if job_id is not None:
        expired = expired.filter(job_id=job_id)
    with transaction.atomic():
        ids = list(expired.values_list("id", flat=True))
        if not ids:
            return 0
        RecordClaim.objects.filter(job_item_id__in=ids).delete()
        return JobItem.objects.filter(id__in=ids, state=JobItem.State.SENDING).update(
            state=JobItem.State.PENDING,
            in_doubt=True,
            claimed_by="",
            lease_until=None,
            **message_fields(
                text(
                    gettext_noop(
                        "The worker stopped while sending; it will be read back before any resend."
                    )
                )
            ),
        )


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
    last_flush = last_renew = time.monotonic()
    reserver = CallReserver()
    # The upstream's breaker as this run sees it; its threads ask it before every call.
    gate = BreakerGate(handler.service) if handler.service else None

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"job{job_id}") as pool:
        while True:
            if not exhausted and len(inflight) < concurrency * 2:
                if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
                    exhausted = True
                elif _follow_breaker(gate, worker_id, take_probe=True) == WAIT:
                    exhausted = True  # open: claim nothing; the items in flight come back paused
                elif not (gate is not None and gate.mode == PROBE and inflight):
                    # Holding the probe: one item goes, the others wait for its answer.
                    limit = 1 if gate is not None and gate.mode == PROBE else chunk
                    claimed = claim_items(job, worker_id, limit, handler)
                    for item in claimed:
                        inflight[pool.submit(_work, job, handler, item, reserver, gate)] = item
                    exhausted = not claimed
            if not inflight:
                flush_results(job, handler, worker_id, buffer)
                buffer = []
                if exhausted:
                    # Items may be waiting out a pause (in doubt, a busy record, a Retry-After,
                    # the breaker): wait for a short one here; for a long one, come back later.
                    waiting = JobItem.objects.filter(job_id=job_id, state=JobItem.State.PENDING)
                    next_at = waiting.order_by("lease_until").values_list("lease_until", flat=True)
                    if next_at.exists():
                        if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
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
            done, _pending = wait(list(inflight), timeout=SERVE_EVERY, return_when=FIRST_COMPLETED)
            reserver.serve()
            for future in done:
                inflight.pop(future)
                buffer.append(future.result())
            now = time.monotonic()
            # While the breaker is not plainly closed each answer is written at once: the probe's
            # decides whether the job goes on, a failure whether it stops.
            hurry = gate is not None and gate.mode != GO and bool(buffer)
            if hurry or len(buffer) >= chunk or now - last_flush >= FLUSH_EVERY_SECONDS:
                flush_results(job, handler, worker_id, buffer)
                buffer = []
                last_flush = now
                forget_queries()
                if _follow_breaker(gate, worker_id, take_probe=False) == WAIT:
                    exhausted = True
            if now - last_renew >= lease_renew_every:
                renewed_until = timezone.now() + _lease()
                JobItem.objects.filter(claimed_by=worker_id, state=JobItem.State.SENDING).update(
                    lease_until=renewed_until
                )
                renew_claims(holder=worker_id, until=renewed_until)
                Job.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())
                last_renew = now

    _release_probe(gate, worker_id)
    job.refresh_from_db()
    if job.cancel_requested:
        cancel_pending_items(job)
    job_finalize(job_id)
    job.refresh_from_db()
    forget_queries()
    return {"succeeded": job.succeeded, "failed": job.failed, "cancelled": job.cancelled}


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


def forget_queries() -> None:
    """A worker lives for days: with DEBUG on, Django would keep the SQL of every item it ran."""
    if settings.DEBUG:
        reset_queries()


def _is_uuid(value: str) -> bool:
    # Task ids of other backends (RQ, immediate, dummy) are not the database backend's UUIDs.
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _defer(job: Job, run_after: datetime) -> None:
    from upstream.pushes.jobs import job_enqueue

    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
        job_enqueue(job, run_after=run_after)


class WorkerStopped(Exception):
    """Why the sweep closed a task a killed worker left running (its exception class path)."""


# Written to task rows, and read back by django-tasks (TaskError.exception_class imports it).
WORKER_STOPPED_PATH = "upstream.pushes.runner.WorkerStopped"


def sweep(*, enqueue: bool = True) -> dict[str, int]:
    """Reclaim expired leases, re-enqueue jobs whose worker has gone quiet, settle what killed
    processes left behind. Each stage runs on its own: one that fails is logged and the others
    still run, so no single bad row can stop the sweep."""
    released = _stage("release leases", release_expired_leases)
    # Before any re-queue: a re-queued job's task_id names its new task and its heartbeat is
    # fresh, so the task row its killed worker left running would never be closed afterwards.
    closed = _stage("close tasks", close_abandoned_tasks)
    requeued = _stage("requeue jobs", lambda: requeue_stalled_jobs(enqueue=enqueue))
    settled = _stage("settle calls", settle_orphan_calls)
    closed += _stage("close tasks", close_abandoned_tasks)  # the tasks of jobs finalized above
    expired = _stage("expire approvals", expire_approvals)
    totals = _stage("dashboard totals", _refresh_dashboard_totals)
    return {
        "released": released,
        "requeued": requeued,
        "calls_settled": settled,
        "tasks_closed": closed,
        "approvals_expired": expired,
        "dashboard_totals": totals,
    }


def _refresh_dashboard_totals() -> int:
    from upstream.console.dashboard import refresh_totals

    return refresh_totals(max_age=settings.DASHBOARD_TOTALS_SECONDS)


def _stage(name: str, work: Callable[[], int]) -> int:
    try:
        return work()
    except Exception:
        logger.exception("sweep: %s failed; the other stages go on", name)
        return 0


def requeue_stalled_jobs(*, enqueue: bool = True) -> int:
    from upstream.pushes.jobs import job_enqueue

    stale_before = timezone.now() - _lease()
    requeued = 0
    candidates = Job.objects.filter(state__in=Job.ACTIVE_STATES).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, created_at__lt=stale_before)
    )
    for job in candidates:
        live = JobItem.objects.filter(
            job=job, state=JobItem.State.SENDING, lease_until__gte=timezone.now()
        ).exists()
        if live:
            continue
        pending = JobItem.objects.filter(job=job, state=JobItem.State.PENDING)
        if not pending.exists() and job_finalize(job.pk):
            continue
        if enqueue and not _task_waiting(job):
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
                job_enqueue(job)
            requeued += 1
    return requeued


def settle_orphan_calls(limit: int = 1000) -> int:
    """Finish call rows a killed process left pending, saying how their item was settled.

    A pending row means the request may have left and its answer was never recorded. Its item
    is settled by reading the record back (release_expired_leases, then the runner); once the
    item is done, the row is closed as in doubt with that outcome. Rows of items still in flight
    are left for a later sweep.
    """
    now = timezone.now()
    orphans = (
        UpstreamCall.objects.filter(outcome="pending", created_at__lt=now - _lease())
        .select_related("job_item")
        .order_by("id")[:limit]
    )
    count = 0
    for call in orphans:
        item = call.job_item
        if item is not None and item.state != JobItem.State.DONE:
            continue
        if item is None:
            note = _("The process stopped before the answer was recorded.")
        else:
            note = _(
                "The process stopped before the answer was recorded. Read back afterwards: "
                "%(outcome)s. %(message)s"
            ) % {"outcome": item.get_outcome_display(), "message": item.message}
        # A read that never answered changed nothing: it simply failed.
        count += UpstreamCall.objects.filter(pk=call.pk, outcome="pending").update(
            outcome="in_doubt" if call.mutating else "failed", error=note.strip()
        )
    return count


def close_abandoned_tasks() -> int:
    """Task rows a killed db_worker left RUNNING (django-tasks-db keeps no lease of its own).

    A job's task is abandoned once the job is finished or nothing has worked on it for a lease;
    a sweep's task once it has run for longer than a few sweep intervals.
    """
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, TaskResultStatus, task_backends

    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    if type(backend).__module__.split(".")[0] != "django_tasks_db":
        return 0  # only the database backend keeps task rows here
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    running = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING)
    # The same "gone quiet" as sweep()'s: a worker killed before its first heartbeat leaves none.
    stale_jobs = Job.objects.filter(
        Q(state__in=Job.FINISHED_STATES)
        | Q(heartbeat_at__lt=now - _lease())
        | Q(heartbeat_at__isnull=True, created_at__lt=now - _lease())
    ).exclude(task_id="")
    job_tasks = running.filter(task_path__endswith=".job_run").filter(
        id__in=[t for t in stale_jobs.values_list("task_id", flat=True) if _is_uuid(t)]
    )
    sweep_tasks = running.filter(
        task_path__endswith=".jobs_sweep",
        started_at__lt=now - 3 * timedelta(seconds=settings.JOBS_SWEEP_INTERVAL_SECONDS),
    )
    closed = 0
    for tasks in (job_tasks, sweep_tasks):
        closed += tasks.update(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            exception_class_path=WORKER_STOPPED_PATH,
            traceback="The worker stopped while running this task; closed by the sweep.",
        )
    return closed


def _task_waiting(job: Job) -> bool:
    """Is the job's last task still waiting in the queue (so a new one would only duplicate it)?"""
    if not job.task_id:
        return False
    from django_tasks import TaskResultStatus, default_task_backend

    try:
        return default_task_backend.get_result(job.task_id).status == TaskResultStatus.READY
    except Exception:
        return False
