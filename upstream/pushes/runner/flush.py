"""Flush: a batch of results written in one transaction.

The calls, the mirror changes and the items' states are written together, so a local change
never exists without the upstream's confirmation and its recorded call. Only results of items
this worker still holds are written (a lease taken over is not ours). The records' claims are
let go in the same transaction, except those of items to be read back, which pass to the item
itself until it is claimed again. The breaker hears the answers after the commit.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.calls.breaker import breaker_record
from upstream.calls.log import upstream_call_from_exchange
from upstream.history.changes import history_source
from upstream.l10n.stored import message_fields, text
from upstream.models import Job, JobItem, RecordChange, RecordClaim, UpstreamCall
from upstream.pushes.claims import release_records
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult
from upstream.pushes.runner.calls import finish_reserved_calls
from upstream.pushes.runner.leases import item_holder, lease_length

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
    UpstreamCall.objects.bulk_create(new_calls, batch_size=500)
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
    change is kept with its source. Returns the results that read their record back."""
    why = _history_context(job, handler, calls)
    with history_source(RecordChange.Source.OPERATION, **why):
        _apply(handler, [r for r in results if r.outcome == JobItem.Outcome.OK])
    read_back = [r for r in results if getattr(r.error, "read_back", None) is not None]
    if read_back:
        # A refused push read its record back: the mirror follows what the upstream holds.
        with history_source(RecordChange.Source.CALL, **why):
            handler.apply_read_back(read_back)
    return read_back


def _history_context(job: Job, handler: JobKind, calls: list[UpstreamCall]) -> dict[str, Any]:
    """Each record's change is kept with the push: who, why, the job and the item's last call."""
    last_call: dict[tuple[str, str], tuple] = {}
    for call in calls:
        key = (handler.target_type, str(call.target_id))
        if call.pk is not None and (
            key not in last_call or last_call[key] < (call.created_at, call.pk)
        ):
            last_call[key] = (call.created_at, call.pk)
    return {
        "actor_id": job.created_by_id,
        "reason": job.reason,
        "job_id": job.pk,
        "calls": {key: pk for key, (_at, pk) in last_call.items()},
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
        # Not sent (the job was cancelled first): not an attempt; resuming sends it.
        update = _ItemUpdate(
            JobItem.State.DONE, r.outcome, r.item.in_doubt, r.message, "", None, now, 0
        )
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
        # Say what happens next: nothing, until someone asks for a read-back.
        message = text(
            gettext_noop(
                "%(error)s Reading back did not settle it, so nothing was sent again. "
                "“Retry failed items” reads the record back first and sends only if "
                "the change is not there."
            ),
            error=message,
        )
    return _ItemUpdate(JobItem.State.DONE, r.outcome, in_doubt, message, code, None, now, 1), False


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
