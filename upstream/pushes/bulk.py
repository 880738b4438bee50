"""A push (or read) over a selection, from launch to its last chunk.

1. **Launch** (`job_create_frozen`, in the web process): "select all" over 50,000 records must
   not load them nor write 50,000 job items in the request. The selection is stored in one
   compact column of the job (`"17:0,18:4,…"`: each record's id and the value the preview judged
   it by, built by the database in one aggregate query), the approval rules are asked, and the
   job is queued. Records created after the launch are not in it; a record whose value moved on
   is skipped by the kind's re-check exactly as an item written at once would be.
2. **Prepare** (`prepare_job`, in the worker): the selection expanded into items in chunks.
3. **Run** (`run_job`): this thread claims chunks, hands the items to a bounded pool of HTTP
   threads (`upstream.pushes.runner.send`), serves their requests for call rows, flushes results
   in batches and renews its leases. The upstream's breaker is checked before every claim: while
   it is open nothing new is claimed. Cancel is checked before every claim and, while items are
   out, every CANCEL_CHECK_EVERY: only the requests in flight complete; the claimed items not
   taken up are closed as cancelled at once. Items waiting out a long pause are left to a task
   queued for their time.
4. **Claim** (`claim_items`): a chunk of pending items taken in one short transaction. Each
   item's record is claimed too (one push at a time per upstream record, across processes), the
   chunk is marked sending with this worker's lease, the kind re-checks each record against what
   was previewed, and the pending call rows of the writes are committed, all before any request
   leaves. Items whose record another push holds stay pending for a moment.
"""

from __future__ import annotations

import heapq
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, reset_queries, transaction
from django.db.models import Aggregate, CharField, Count, F, Q, QuerySet, Sum, TextField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.actors import User, actor_allowed
from upstream.calls.breaker import (
    GO,
    PROBE,
    WAIT,
    BreakerGate,
    breaker_admit,
    breaker_release_probe,
    breaker_require,
    breaker_trip,
)
from upstream.calls.slots import WAIT_POLL, SlotLease
from upstream.l10n.stored import message_fields, text, to_json
from upstream.models import Job, JobItem, RecordClaim
from upstream.pushes.approvals import approval_fields
from upstream.pushes.claims import claim_records, release_records
from upstream.pushes.jobs import job_enqueue
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult, kind_for
from upstream.pushes.once import once_link
from upstream.pushes.runner.finalize import cancel_pending_items, job_finalize, take_cancel
from upstream.pushes.runner.leases import (
    item_holder,
    lease_length,
    new_worker_id,
    release_expired_leases,
    renew_leases,
)
from upstream.pushes.runner.send import (
    CallReserver,
    SendStop,
    flush_results,
    hand_over,
    reserve_calls,
    work_item,
)
from upstream.rows import insert_rows

# --- Launch and prepare: the frozen selection -------------------------------------------------

EXPAND_CHUNK = 2000
# While the run loop sends, it writes the selection's next items this many at a time: a step
# costs its thread a few tens of ms, which the requests in flight cover.
EXPAND_WHILE_SENDING = 250


class _JoinIds(Aggregate):
    """STRING_AGG on PostgreSQL, GROUP_CONCAT on SQLite: one text of all entries."""

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s, ',')"
    output_field = TextField()

    def as_sqlite(self, compiler, conn, **extra_context):
        return self.as_sql(
            compiler, conn, function="GROUP_CONCAT", template="%(function)s(%(expressions)s)"
        )


def freeze(
    queryset: QuerySet, tag: str | None = None, amount: str | None = None
) -> tuple[int, str, Decimal | None]:
    """(how many, "id[:tag],…", the sum of `amount`) of the queryset, in one query."""
    entry: Any = Cast("pk", CharField())
    if tag:
        entry = Concat(entry, Value(":"), Cast(F(tag), CharField()), output_field=CharField())
    totals: dict[str, Any] = {"n": Count("pk"), "ids": _JoinIds(entry)}
    if amount:
        totals["amount"] = Sum(amount)
    row = queryset.order_by().aggregate(**totals)
    total = (row.get("amount") or Decimal("0")) if amount else None
    return row["n"] or 0, row["ids"] or "", total


def lowest_ids(job_id: int, limit: int) -> list[int]:
    """The `limit` lowest record ids of a job's frozen selection (the first items it will
    have), without bringing the selection (≈ 1 MB at 50,000 records) into this process: on
    PostgreSQL the database splits it and sends `limit` ids; elsewhere it is read and scanned
    keeping only the lowest ids, not parsed whole."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT split_part(entry, ':', 1)::bigint AS pk "
                "FROM upstream_job, unnest(string_to_array(selection, ',')) AS entry "
                "WHERE id = %s AND entry <> '' ORDER BY 1 LIMIT %s",
                [job_id, limit],
            )
            return [pk for (pk,) in cursor.fetchall()]
    selection = Job.objects.filter(pk=job_id).values_list("selection", flat=True).first() or ""
    return heapq.nsmallest(limit, _entry_ids(selection))


def _entry_ids(selection: str) -> Iterator[int]:
    for entry in re.finditer(r"(\d+)(?::[^,]*)?", selection):
        yield int(entry.group(1))


def parse(selection: str) -> list[tuple[int, str]]:
    """The selection's (id, tag) entries in id order (the expansion's item order)."""
    entries = []
    for part in filter(None, selection.split(",")):
        pk, _sep, tag = part.partition(":")
        entries.append((int(pk), tag))
    entries.sort()
    return entries


def job_create_frozen(
    *,
    kind: str,
    queryset: QuerySet,
    title: Callable[[int], str],
    actor: User | None,
    params: dict[str, Any] | None = None,
    reason: str = "",
    tag: str | None = None,
    amount: str | None = None,
    extra_amount: Decimal | None = None,
    approval_count: int | None = None,
) -> Job:
    """Create a job over the queryset's records as they are now, and queue it.

    The same statements whatever the selection's size: one aggregate, one insert, the enqueue.
    `tag` names the field whose current value each item will be re-checked against; `amount`
    the field whose sum is the job's ₺ total (or `extra_amount` gives it). A job over an
    approval threshold (by its count, or `approval_count` records it changes, or its ₺) waits
    for a second person instead of being queued. Refused (UpstreamUnavailable) while the
    upstream's circuit breaker is open.
    """
    handler = kind_for(kind)
    if not actor_allowed(actor, handler.permission):
        raise PermissionDenied(_("You do not have permission to run this change."))
    breaker_require(handler.service)
    with transaction.atomic():
        count, ids, total = freeze(queryset, tag, amount)
        if not count:
            raise ValidationError(_("Nothing to send: no record would change."))
        if extra_amount is not None:
            total = (total or Decimal("0")) + extra_amount
        job = Job.objects.create(
            kind=kind,
            title=title(count)[:200],
            title_text=to_json(title(count)),
            params=params or {},
            reason=reason,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            total=count,
            selection=ids,
            prepared=0,
            amount=total,
            # A read (a refresh) sends nothing upstream: no second person needed.
            **(
                approval_fields(max(count, approval_count or 0), total, actor)
                if handler.operation
                else {}
            ),
        )
        # A repeated request (the same Idempotency-Key or confirmation) finds this job.
        once_link(job)
        if job.state == Job.State.QUEUED:
            job_enqueue(job)
    return job


def prepare_job(job_id: int, *, chunk: int | None = None) -> int:
    """Expand the job's frozen selection into items, a chunk per transaction; return how many
    this call wrote. Safe to run again after a crash or beside another worker: each chunk moves
    `prepared` forward only from the value it read, so no chunk is written twice."""
    preparer = Preparer(job_id, chunk=chunk)
    while not preparer.step():
        pass
    return preparer.written


class Preparer:
    """The frozen selection written as items one chunk at a time, so the run loop can send the
    first items while it writes the next (a chunk costs the main thread some tens of ms; the
    whole of 50,000 entries would hold the first send back by seconds)."""

    def __init__(self, job_id: int, *, chunk: int | None = None) -> None:
        self.job_id = job_id
        self.chunk = chunk or EXPAND_CHUNK  # read now, so a test or a setting may change it
        self.job = Job.objects.only("pk", "kind", "params", "selection", "prepared").get(pk=job_id)
        self.handler = kind_for(self.job.kind)
        self.model = apps.get_model(self.handler.target_type)
        self.entries = parse(self.job.selection) if self.job.prepared is not None else []
        self.written = 0

    def step(self) -> bool:
        """Write the next chunk (unless another worker did); True once every entry is written."""
        if self.job.prepared is None:
            return True  # items written at launch: nothing frozen to expand
        job_id, handler = self.job_id, self.handler
        prepared, cancel = _progress(job_id)
        if prepared >= len(self.entries):
            return True
        part = self.entries[prepared : prepared + self.chunk]
        with transaction.atomic():
            moved = Job.objects.filter(pk=job_id, prepared=prepared).update(
                prepared=prepared + len(part), heartbeat_at=timezone.now()
            )
            if not moved:
                return False  # another worker took this chunk; the next step reads where it got
            records = handler.expand_queryset(self.model.objects.all()).in_bulk(
                [pk for pk, _ in part]
            )
            built = handler.expand(list(records.values()), dict(part), self.job.params)
            insert_rows(
                [
                    _item(job_id, handler.target_type, position, pk, built.get(pk), cancel)
                    for position, (pk, _tag) in enumerate(part, start=prepared + 1)
                ],
                new_ids=False,
            )
            self.written += len(part)
        if settings.DEBUG:
            reset_queries()  # a worker with DEBUG on must not keep every chunk's SQL
        return prepared + len(part) >= len(self.entries)


def _progress(job_id: int) -> tuple[int, bool]:
    return Job.objects.values_list("prepared", "cancel_requested").get(pk=job_id)


def _item(job_id: int, target_type: str, position: int, pk: int, new: Any, cancel: bool) -> JobItem:
    item = JobItem(job_id=job_id, position=position, target_type=target_type, target_id=str(pk))
    if new is None:
        # Deleted from the mirror since the launch: nothing to send it from.
        item.target_repr = f"#{pk}"
        item.state, item.outcome = JobItem.State.DONE, JobItem.Outcome.SKIPPED
        item.message = _("The record is no longer in the mirror.")
        item.finished_at = timezone.now()
    else:
        item.target_repr = (new.target_repr or str(new.target))[:200]
        item.payload = new.payload
        if cancel:
            item.state, item.outcome = JobItem.State.DONE, JobItem.Outcome.CANCELLED
            item.message = _("Cancelled before it was sent.")
            item.finished_at = timezone.now()
    return item


# --- Run: the loop over a job's chunks --------------------------------------------------------

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
    # The first items are written before anything is sent, the rest while the first are out.
    preparer = (
        Preparer(job_id, chunk=min(EXPAND_CHUNK, EXPAND_WHILE_SENDING)) if unprepared else None
    )
    if preparer is not None and preparer.step():
        preparer = None
    Job.objects.filter(pk=job_id, state=Job.State.PREPARING).update(state=Job.State.RUNNING)
    concurrency = max(1, handler.concurrency())
    chunk = max(settings.JOBS_CHUNK_SIZE, concurrency)
    # This run's share of the upstream's cap, across every process (upstream.calls.slots): its
    # threads send through `slots.gate`, at most `slots.granted` at a time.
    slots = SlotLease(
        handler.service,
        holder=worker_id,
        ask=concurrency,
        priority=handler.priority(job),
        job_id=job_id,
    )
    lease_renew_every = settings.JOBS_LEASE_SECONDS / 3
    inflight: dict[Future[WorkResult], WorkItem] = {}
    buffer: list[WorkResult] = []
    exhausted = False
    last_flush = last_renew = last_cancel_check = time.monotonic()
    stop = SendStop()
    reserver = CallReserver()
    # The upstream's breaker as this run sees it; its threads ask it before every call.
    gate = BreakerGate(handler.service) if handler.service else None
    # A sync reads its listing while its items run (upstream.history.sync_job); None otherwise.
    listing = handler.listing(job, reserver, gate)

    try:
        # Exits in reverse: the gate shuts (a thread still waiting at it sends nothing), the job
        # stops a sync's listing reader, the pool drains, then the slots are given back.
        with (
            slots,
            # A sync's listing reader has a thread of its own (it waits on its queue between
            # pages), so `concurrency` threads are left for the items.
            ThreadPoolExecutor(
                max_workers=concurrency + (listing is not None),
                thread_name_prefix=f"job{job_id}",
            ) as pool,
            listing if listing is not None else nullcontext(),
            slots.gate,
        ):
            if listing is not None:
                # One of the pool's threads reads the listing, each page through the run's slots.
                listing.start(pool, slots.gate)
            while True:
                if preparer is not None:
                    written = preparer.written
                    if preparer.step():
                        preparer = None
                    if preparer is None or preparer.written > written:
                        exhausted = False  # new items to claim: the pool need not drain first
                if listing is not None and listing.open:
                    # A sync's listing pages, written as items as they arrive.
                    reserver.serve()
                    if listing.pump(stopped=stop.stopped):
                        exhausted = False
                slots.tick()
                if not slots.granted and not inflight and not stop.stopped:
                    # Every slot is taken, or given to work that goes first: wait, alive.
                    flush_results(job, handler, worker_id, buffer)
                    buffer = []
                    if _cancel_requested(job_id):
                        _stop_sending(job, worker_id, stop, inflight, handler.target_type)
                        continue
                    listing_open = listing is not None and listing.open
                    if (
                        not listing_open
                        and preparer is None
                        and not JobItem.objects.filter(
                            job_id=job_id, state=JobItem.State.PENDING
                        ).exists()
                    ):
                        break  # nothing left to send: finishing needs no slot
                    time.sleep(WAIT_POLL)
                    if time.monotonic() - last_renew >= lease_renew_every:
                        renew_leases(job_id, worker_id)
                        last_renew = time.monotonic()
                    continue
                room = max(1, slots.granted) * 2
                if not exhausted and len(inflight) < room and (slots.granted or stop.stopped):
                    if not stop.stopped and _cancel_requested(job_id):
                        _stop_sending(job, worker_id, stop, inflight, handler.target_type)
                    if _follow_breaker(gate, worker_id, take_probe=True) == WAIT:
                        exhausted = (
                            True  # open: claim nothing; the items in flight come back paused
                        )
                    elif not (gate is not None and gate.mode == PROBE and inflight):
                        # Holding the probe: one item goes, the others wait for its answer.
                        limit = 1 if gate is not None and gate.mode == PROBE else chunk
                        # After a cancel only items in doubt are taken, to be read back.
                        claimed = claim_items(
                            job, worker_id, limit, handler, in_doubt_only=stop.stopped
                        )
                        for item in claimed:
                            inflight[
                                pool.submit(
                                    slots.gate.run,
                                    _unsent(item),
                                    work_item,
                                    job,
                                    handler,
                                    item,
                                    reserver,
                                    gate,
                                    stop,
                                )
                            ] = item
                        exhausted = not claimed
                if not inflight:
                    flush_results(job, handler, worker_id, buffer)
                    buffer = []
                    if exhausted and listing is not None and listing.open:
                        time.sleep(0.01)  # the next listing page is on its way
                        exhausted = False
                        continue
                    if exhausted and preparer is not None:
                        exhausted = False  # the next items are written at the loop's top
                        continue
                    if exhausted:
                        # Items may be waiting out a pause (in doubt, a busy record, a
                        # Retry-After, the breaker): wait for a short one here; for a long one,
                        # come back later.
                        if not stop.stopped and _cancel_requested(job_id):
                            _stop_sending(job, worker_id, stop, inflight, handler.target_type)
                        waiting = JobItem.objects.filter(job_id=job_id, state=JobItem.State.PENDING)
                        if stop.stopped:
                            waiting = waiting.filter(in_doubt=True)  # still to be read back
                        next_at = waiting.order_by("lease_until").values_list(
                            "lease_until", flat=True
                        )
                        if next_at.exists():
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


def _unsent(item: WorkItem) -> Callable[[], WorkResult]:
    # The run ended before a slot let the item go: nothing was sent, it waits as pending.
    return lambda: WorkResult(item, JobItem.Outcome.NONE, paused=True)


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
    up, and the waiting ones, are closed as cancelled now (their results are not written).
    Items in doubt are not: a thread still reads each back (`work_item`), sending nothing."""
    started = stop.stop()
    unsent = [
        item.id for future, item in inflight.items() if item.id not in started and not item.in_doubt
    ]
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


# --- Claim: a chunk taken for sending ---------------------------------------------------------

# A record another push holds is looked at again after this pause.
CLAIM_BUSY_PAUSE = timedelta(seconds=1)


def claim_items(
    job: Job,
    worker_id: str,
    limit: int,
    handler: JobKind | None = None,
    *,
    in_doubt_only: bool = False,
) -> list[WorkItem]:
    """Claim up to `limit` pending items and their records, in one short transaction.

    In that transaction each item's record is claimed (one push at a time per record), a
    pending call-log row is committed for the write it will send, and the handler re-checks the
    record against what was previewed. Items whose record another push holds stay pending and
    are looked at again a moment later.
    """
    handler = handler or kind_for(job.kind)
    now = timezone.now()
    lease_until = now + lease_length()
    with transaction.atomic():
        pending = (
            JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .order_by("position")
        )
        if in_doubt_only:
            pending = pending.filter(in_doubt=True)
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
        call_ids = reserve_calls(job, handler, [i for i in items if i.id not in stale], now)
    return [
        replace(item, stale_reason=stale.get(item.id, ""), call_id=call_ids.get(item.id))
        for item in items
    ]
