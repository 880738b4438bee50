"""Send: a batch of claimed items on its way out and back, in three steps.

1. **Calls** (`reserve_calls`, `CallReserver`, `insert_call`, `JobRecorder`): every request's
   call-log row is committed, pending, before the request leaves. The write an item is about to
   send gets its row when the item is claimed, in the claim's transaction. Any other request (a
   retried attempt, a read-back) gets a row of its own before it leaves: a job's pool thread
   asks the runner's thread for it (`CallReserver`), since those threads never touch the
   database; a push run inline inserts it itself. So a killed process always leaves evidence: a
   pending row the sweep settles.
2. **Work** (`work_item`, in a job's pool threads; a single push runs it inline): push the item,
   or read back one in doubt, or skip one whose record went stale. It only talks HTTP. Whatever
   happens becomes a WorkResult; a failure after a write may have been applied leaves the item
   in doubt, to be read back before anything is sent again. With a breaker gate, the breaker is
   asked before every call; `SendStop` stops the threads taking up another item on cancel.
3. **Flush** (`flush_results`): a batch of results in one transaction: the calls, the mirror
   changes (the kind's `apply`, recorded in history) and the items' states, so a local change
   never exists without the upstream's confirmation and its recorded call. Only results of items
   this worker still holds are written. The records' claims are let go in the same transaction,
   except those of items to be read back, which pass to the item itself. The breaker hears the
   answers after the commit. `hand_over` is what a holder leaves when our own code fails.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.calls.breaker import BreakerGate, BreakerOpen, breaker_record
from upstream.calls.client import Exchange
from upstream.calls.errors import UpstreamError, UpstreamResponseError
from upstream.calls.log import upstream_call_from_exchange
from upstream.history.changes import history_source
from upstream.l10n.stored import message_fields, text
from upstream.models import Job, JobItem, RecordChange, RecordClaim, UpstreamCall
from upstream.pushes.claims import release_records
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult
from upstream.pushes.runner.leases import item_holder, lease_length
from upstream.rows import insert_rows

# --- Calls: committed before a request leaves -------------------------------------------------


def reserve_calls(
    job: Job, handler: JobKind, items: list[WorkItem], now: datetime
) -> dict[int, int]:
    """Commit one pending call-log row per item for the write it is about to send."""
    if not handler.operation or not items:
        return {}
    calls = [
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
    ]
    insert_rows(calls, new_ids=True)
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
        # Every request waiting now is committed in one insert: a sync's reads ask for a row
        # each, hundreds a second, and one commit per row would hold their requests back.
        waiting: list[tuple[UpstreamCall, threading.Event]] = []
        while True:
            try:
                waiting.append(self._requests.get_nowait())
            except queue.Empty:
                break
        if not waiting:
            return
        try:
            calls = [call for call, _done in waiting]
            if len(calls) > 1:
                insert_rows(calls, new_ids=True)
            else:
                calls[0].save(force_insert=True)
        finally:
            for _call, done in waiting:
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
        elif not self.handler.reserve_reads:
            # A read of a kind that only reads (a sync): nothing to settle if the process dies
            # with it in flight, so its row is written with the results, not before it leaves.
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


def finish_reserved_calls(calls: list[UpstreamCall]) -> list[UpstreamCall]:
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
    insert_rows([c for c in calls if c.pk in pending], new_ids=False)
    late = [c for c in calls if c.pk not in pending]
    for call in late:
        call.pk = None
    return late


# --- Work: the HTTP side, in the pool's threads -----------------------------------------------

logger = logging.getLogger(__name__)


class SendStop:
    """A job's cancel as its pool threads see it: checked as a thread takes up an item.

    The runner's thread reads the job's cancel flag (the threads never touch the database) and
    calls `stop`; from then on no item is let through. The lock makes the line exact: `stop`
    returns the items already let through (those in flight), every other claimed item is not
    sent, so the runner can write them as cancelled at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._started: set[int] = set()

    def admit(self, item_id: int) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._started.add(item_id)
            return True

    def stop(self) -> set[int]:
        with self._lock:
            self._stopped = True
            return set(self._started)

    @property
    def stopped(self) -> bool:
        return self._stopped


# A Retry-After up to this long re-schedules the item; a longer one fails it with the reason.
MAX_RETRY_AFTER = 3600


def work_item(
    job: Job,
    handler: JobKind,
    item: WorkItem,
    reserve: Callable[[UpstreamCall], int] = insert_call,
    gate: BreakerGate | None = None,
    stop: SendStop | None = None,
) -> WorkResult:
    settle_only = stop is not None and not stop.admit(item.id)
    if settle_only and not item.in_doubt:
        # Cancelled while it waited for a thread: nothing is sent.
        return WorkResult(
            item,
            JobItem.Outcome.CANCELLED,
            message=text(gettext_noop("Cancelled before it was sent.")),
        )
    recorder = JobRecorder(job, handler, item, reserve, gate)
    return _attempt(handler, item, recorder, settle_only=settle_only)


def _attempt(
    handler: JobKind, item: WorkItem, recorder: JobRecorder, *, settle_only: bool = False
) -> WorkResult:
    """Push the item, or read it back first when it is in doubt. With `settle_only` (its job
    was cancelled) an item in doubt is only read back: one not applied is cancelled, not sent."""
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
            if settle_only:
                return WorkResult(
                    item,
                    JobItem.Outcome.CANCELLED,
                    message=text(
                        gettext_noop(
                            "Read back after the cancel: the change is not there, so it was "
                            "not sent again."
                        )
                    ),
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


# --- Flush: a batch of results in one transaction ---------------------------------------------

logger = logging.getLogger(__name__)

# An in-doubt item is read back at most this many times before it is reported in doubt.
MAX_ITEM_ATTEMPTS = 3
# How long an in-doubt item waits before it is read back, so a slow upstream can finish first.
IN_DOUBT_PAUSE = timedelta(seconds=2)


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
        attempts = _lock_own_items(results, worker_id)
        all_targets = [r.item.target_id for r in results]
        # A result whose lease was taken over by another worker is not ours to write.
        results = [r for r in results if r.item.id in attempts]
        calls = _write_calls(job, handler, results)
        read_back = _write_mirror(job, handler, results, calls)
        keep_claimed = _write_items(job, results, attempts, calls, read_back, now)
        _let_go_of_records(handler, worker_id, all_targets, keep_claimed, now)
    # After the commit, in a short transaction of its own: the breaker's row is shared by every
    # process and must not wait for this flush's locks.
    breaker_record(exchanges)


def _lock_own_items(results: list[WorkResult], worker_id: str) -> dict[int, int]:
    """Lock the items of these results that this worker still holds; their attempts so far."""
    mine = JobItem.objects.filter(
        id__in=[r.item.id for r in results], claimed_by=worker_id, state=JobItem.State.SENDING
    )
    if connection.features.has_select_for_update:
        mine = mine.select_for_update()
    return dict(mine.values_list("id", "attempts"))


def _write_calls(job: Job, handler: JobKind, results: list[WorkResult]) -> list[UpstreamCall]:
    """Write the call rows of the results' exchanges; return the rows written.

    A request whose pending row was committed before it left finishes that row in place; any
    other exchange gets a row of its own.
    """
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
    new_calls += finish_reserved_calls(finished_calls)
    insert_rows(new_calls, new_ids=True)
    unused = [
        r.item.call_id
        for r in results
        if r.item.call_id is not None and r.item.call_id not in used_reserved
    ]
    if unused:
        # Reserved for a write that was never sent (read back, skipped): no call happened.
        UpstreamCall.objects.filter(pk__in=unused, outcome="pending", url="").delete()
    return finished_calls + new_calls


def _write_mirror(
    job: Job, handler: JobKind, results: list[WorkResult], calls: list[UpstreamCall]
) -> list[WorkResult]:
    """Apply the confirmed changes to the mirror, then the read-backs of refused pushes; each
    change is kept with its source and call. Returns the results that read their record back."""
    why = _history_context(job, handler, results, calls)
    pushed: list[WorkResult] = []
    settled: list[WorkResult] = []
    for r in results:
        if r.outcome == JobItem.Outcome.OK:
            (settled if _settled(handler, r) else pushed).append(r)
    with history_source(RecordChange.Source.OPERATION, **why):
        _apply(handler, pushed)
    if settled:
        # Confirmed by reading back, not by the write's answer: the history says so.
        with history_source(RecordChange.Source.READ_BACK, **why):
            _apply(handler, settled)
    read_back = [r for r in results if getattr(r.error, "read_back", None) is not None]
    if read_back:
        # A refused push read its record back: the mirror follows what the upstream holds.
        with history_source(RecordChange.Source.CALL, **why):
            handler.apply_read_back(read_back)
    return read_back


def _settled(handler: JobKind, r: WorkResult) -> bool:
    """A write confirmed by reading back: no write of it got an answer (the worker's settle
    sends none; a single push's read-back in the request follows a write left unanswered)."""
    return bool(handler.operation) and not any(
        e.mutating and e.outcome == "ok" for e in r.exchanges
    )


def _history_context(
    job: Job, handler: JobKind, results: list[WorkResult], calls: list[UpstreamCall]
) -> dict[str, Any]:
    """Each record's change is kept with the push: who, why, the job and the item's call.

    The call is the one that brought the change: the write that was answered, else the item's
    last call (the read-back that confirmed or refuted it, or a kind's only call). Each result
    carries it too (`call_id`), for writes of records beside the item's target.
    """
    by_item: dict[int, list[UpstreamCall]] = defaultdict(list)
    for call in calls:
        if call.pk is not None:
            by_item[call.job_item_id].append(call)
    targets: dict[tuple[str, str], int] = {}
    for r in results:
        own = sorted(by_item.get(r.item.id, ()), key=lambda c: (c.created_at, c.pk))
        answered = [c for c in own if c.mutating and c.outcome == "ok"]
        cause = answered[-1] if answered else own[-1] if own else None
        r.call_id = cause.pk if cause is not None else None
        if r.call_id is not None:
            targets[(handler.target_type, str(r.item.target_id))] = r.call_id
    return {
        "actor_id": job.created_by_id,
        "reason": job.reason,
        "job_id": job.pk,
        "calls": targets,
    }


class _ItemUpdate(NamedTuple):
    """What a result leaves on its item; results that leave the same share one UPDATE."""

    state: str
    outcome: str
    in_doubt: bool
    message: str  # a Text when it was written with upstream.l10n.stored.text
    upstream_code: str
    lease_until: datetime | None
    finished_at: datetime | None
    tried: int  # added to the item's attempts


def _write_items(
    job: Job,
    results: list[WorkResult],
    attempts: dict[int, int],
    calls: list[UpstreamCall],
    read_back: list[WorkResult],
    now: datetime,
) -> list[WorkItem]:
    """Write each item's state, result and last call, and the job's counters.

    Returns the items that keep their record claimed until they are read back.
    """
    # Most results share their state, outcome, message and result: one UPDATE per such group.
    # Building one CASE per field for every row (bulk_update) costs more CPU than the pushes.
    groups: dict[_ItemUpdate, list[int]] = defaultdict(list)
    by_result: dict[str, list[int]] = defaultdict(list)
    finished: Counter[str] = Counter()
    keep_claimed: list[WorkItem] = []
    for r in results:
        update, keep_claim = _item_update(r, attempts[r.item.id], now)
        groups[update].append(r.item.id)
        by_result[json.dumps(r.result, sort_keys=True, default=str)].append(r.item.id)
        if update.state == JobItem.State.DONE:
            finished[update.outcome] += 1
        if keep_claim:
            keep_claimed.append(r.item)
    for update, ids in groups.items():
        JobItem.objects.filter(id__in=ids).update(
            state=update.state,
            outcome=update.outcome,
            in_doubt=update.in_doubt,
            **message_fields(update.message),
            upstream_code=update.upstream_code,
            lease_until=update.lease_until,
            finished_at=update.finished_at,
            claimed_by="",
            attempts=F("attempts") + update.tried,
        )
    for result, ids in by_result.items():
        JobItem.objects.filter(id__in=ids).update(result=json.loads(result))
    _link_last_calls(results, calls, read_back)
    succeeded = finished[JobItem.Outcome.OK]
    skipped = finished[JobItem.Outcome.SKIPPED]
    cancelled = finished[JobItem.Outcome.CANCELLED]
    Job.objects.filter(pk=job.pk).update(
        succeeded=F("succeeded") + succeeded,
        failed=F("failed") + (sum(finished.values()) - succeeded - skipped - cancelled),
        skipped=F("skipped") + skipped,
        cancelled=F("cancelled") + cancelled,
        heartbeat_at=now,
    )
    return keep_claimed


def _item_update(r: WorkResult, attempts: int, now: datetime) -> tuple[_ItemUpdate, bool]:
    """Where a result leaves its item, and whether the item keeps its record claimed."""
    code = str(r.upstream_code)[:32]
    if r.paused:
        # The breaker is open: pending again, claimed once it lets calls through. Not an
        # attempt; an item that may have been applied keeps its record, as below.
        update = _ItemUpdate(
            JobItem.State.PENDING, "", r.item.in_doubt, r.message, code, None, None, 0
        )
        return update, r.item.in_doubt
    if r.outcome == JobItem.Outcome.CANCELLED:
        # Not sent (the job was cancelled first, or a read-back after the cancel found the
        # change not there): settled, not an attempt; resuming sends it.
        update = _ItemUpdate(JobItem.State.DONE, r.outcome, False, r.message, "", None, now, 0)
        return update, False
    if r.retry_after is not None:
        # The upstream asked us to wait: nothing was applied, send it again later.
        lease = now + timedelta(seconds=r.retry_after)
        update = _ItemUpdate(
            JobItem.State.PENDING, "", r.item.in_doubt, r.message, code, lease, None, 1
        )
        return update, False
    if r.outcome == JobItem.Outcome.IN_DOUBT and attempts + 1 < MAX_ITEM_ATTEMPTS:
        # Read it back a little later before anything is sent again; until then the record
        # stays claimed, so no other push goes out on a mirror that may be wrong.
        lease = now + IN_DOUBT_PAUSE
        update = _ItemUpdate(JobItem.State.PENDING, "", True, r.message, code, lease, None, 1)
        return update, True
    in_doubt = r.outcome == JobItem.Outcome.IN_DOUBT
    message = r.message
    if in_doubt:
        # Say what happens next: nothing, until someone asks for a read-back. The record stays
        # claimed by the item meanwhile: no other push may race a write that may have landed.
        message = text(
            gettext_noop(
                "%(error)s Reading back did not settle it, so nothing was sent again, and no "
                "other change of this record is sent until it is settled. “Retry failed items” "
                "reads the record back first and sends only if the change is not there."
            ),
            error=message,
        )
    update = _ItemUpdate(JobItem.State.DONE, r.outcome, in_doubt, message, code, None, now, 1)
    return update, in_doubt


def _link_last_calls(
    results: list[WorkResult], calls: list[UpstreamCall], read_back: list[WorkResult]
) -> None:
    """Point each item at its last call: the newest row written for it, except that a refused
    write stays the item's call rather than the read-back that followed it."""
    called = {call.job_item_id for call in calls}
    with_call = [r.item.id for r in results if r.item.id in called]
    if with_call:
        JobItem.objects.filter(id__in=with_call).update(
            call_id=Subquery(
                UpstreamCall.objects.filter(job_item_id=OuterRef("pk"))
                .order_by("-created_at", "-id")
                .values("id")[:1]
            )
        )
    for r in read_back:
        if r.error.call_id is not None:
            JobItem.objects.filter(id=r.item.id).update(call_id=r.error.call_id)


def _let_go_of_records(
    handler: JobKind,
    worker_id: str,
    targets: list[str],
    keep_claimed: list[WorkItem],
    now: datetime,
) -> None:
    """Release the batch's record claims, except those of items to be read back: each of those
    passes from this worker to the item itself (`item_holder`), which takes it back when it is
    claimed again."""
    for item in keep_claimed:
        RecordClaim.objects.filter(
            holder=worker_id, target_type=handler.target_type, target_id=item.target_id
        ).update(holder=item_holder(item.id), job_item_id=item.id, until=now + lease_length())
    release_records(holder=worker_id, target_type=handler.target_type, target_ids=targets)


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


def hand_over(job: Job, target_type: str, holder: str, error: BaseException, *, sent: bool) -> int:
    """What a holder leaves when our own code fails while it holds items: nothing stays held by
    a holder that has stopped (`error` is logged by the caller).

    The holder's sending items whose write may have gone out (`sent`) are put in doubt, and
    each keeps its record claimed under `item_holder` until a read-back settles it: a plain
    release would let another push race a write the upstream may have applied. Items with
    nothing sent fail, and their records are released. Calls left pending stay as evidence for
    the sweep. Returns how many items were handed over.
    """
    now = timezone.now()
    internal = text(
        gettext_noop("Internal error (%(error)s); see the server log."),
        error=type(error).__name__,
    )
    with transaction.atomic():
        items = JobItem.objects.filter(
            job_id=job.pk, claimed_by=holder, state=JobItem.State.SENDING
        )
        if connection.features.has_select_for_update:
            items = items.select_for_update()
        held = dict(items.values_list("id", "target_id"))
        mine = JobItem.objects.filter(id__in=list(held))
        if sent:
            mine.update(
                state=JobItem.State.PENDING,
                in_doubt=True,
                claimed_by="",
                lease_until=now + IN_DOUBT_PAUSE,
                attempts=F("attempts") + 1,
                **message_fields(
                    text(
                        gettext_noop(
                            "%(error)s The change may have reached the upstream; "
                            "it will be read back."
                        ),
                        error=internal,
                    )
                ),
            )
            for item_id, target_id in held.items():
                RecordClaim.objects.filter(
                    holder=holder, target_type=target_type, target_id=target_id
                ).update(
                    holder=item_holder(item_id), job_item_id=item_id, until=now + lease_length()
                )
        else:
            mine.update(
                state=JobItem.State.DONE,
                outcome=JobItem.Outcome.FAILED,
                in_doubt=False,
                claimed_by="",
                lease_until=None,
                finished_at=now,
                attempts=F("attempts") + 1,
                **message_fields(internal),
            )
            # Reserved for a write that never left: no call happened (as in the flush).
            UpstreamCall.objects.filter(
                job_item_id__in=list(held), outcome="pending", url=""
            ).delete()
        # Whatever was not passed on above (a record whose item was already written) is free.
        release_records(holder=holder, target_type=target_type)
        Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    return len(held)
