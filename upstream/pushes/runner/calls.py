"""Calls: every request's call-log row is committed, pending, before the request leaves.

The write an item is about to send gets its pending row when the item is claimed
(`reserve_calls`, in the claim's transaction). Any other request (a retried attempt, a
read-back) gets a row of its own before it leaves: a job's pool thread asks the runner's thread
for it (`CallReserver`), since those threads never touch the database; a push run inline inserts
it itself (`insert_call`). `JobRecorder` hands each exchange its row; the flush finishes the rows
in place (`finish_reserved_calls`). So a killed process always leaves evidence: a pending row the
sweep settles.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import datetime

from upstream.calls.breaker import BreakerGate
from upstream.calls.client import Exchange
from upstream.calls.log import upstream_call_from_exchange
from upstream.models import Job, UpstreamCall
from upstream.pushes.kinds import JobKind, WorkItem


def reserve_calls(
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
    finished = [c for c in calls if c.pk in pending]
    UpstreamCall.objects.bulk_create(finished, batch_size=500)
    late = [c for c in calls if c.pk not in pending]
    for call in late:
        call.pk = None
    return late
