"""A sync is a job (docs/decisions/017-sync-as-a-job.md).

An upstream's full sync runs through the runner's engine like any job: its kind (`SyncKind`,
one per upstream, defined in its vertical) lists the upstream page by page while the items run,
and each item is one per-record read (Paynet `invoice_list` of a subscription, WiseCP
`GetInvoice` of an invoice) spread over the kind's concurrency with the pooled session and
written in the flush's transaction with history rows of source `sync` and the read guard
(`held_back`). The same leases and sweep apply: a run killed mid-sync resumes where the job's
items and its listing cursor stopped.

- **The listing** (`Listing`): one of the pool's threads reads the listing pages (HTTP only)
  into a queue of at most two pages; the runner's thread writes each page as items, the page's
  calls and the cursor after it in one transaction, so memory stays flat and a page is written
  once however many runs take part. A listing that fails is a failed item of the job.
- **One at a time**: a partial unique constraint (`job_one_active_sync`) lets one sync job per
  upstream be queued or running; a second start answers with that one (`sync_start`).
- **The end**: records the mirror holds that a complete listing did not name have vanished;
  they are reported once (an open drift entry), and the job's summary (records seen, changed,
  vanished, failed) is kept in its params for its page and `manage.py sync`.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, F, Model, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext_noop

from upstream.calls.breaker import BreakerGate, breaker_record
from upstream.calls.client import Exchange
from upstream.calls.errors import UpstreamError
from upstream.calls.log import upstream_call_from_exchange
from upstream.calls.slots import SlotGate
from upstream.history.changes import history_source
from upstream.history.refresh import RefreshHandler
from upstream.history.sync import SyncCounts
from upstream.l10n.stored import message_fields, text, to_json
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes.jobs import NewItem, job_enqueue
from upstream.pushes.kinds import kind_for
from upstream.rows import insert_rows

logger = logging.getLogger(__name__)

SUFFIX = ".sync"
# Listing pages read ahead of the runner's thread: the memory a sync holds, whatever its size.
PAGES_AHEAD = 2


def sync_kind(service: str) -> str:
    return f"{service}{SUFFIX}"


def is_sync_kind(kind: str) -> bool:
    return kind.endswith(SUFFIX)


class SyncKind(RefreshHandler):
    """One upstream's full sync. A vertical defines the listing and the per-record read."""

    history_kind = "sync"
    # Reads only: a read in flight when the process dies leaves nothing to settle, so its call
    # row is written with the results (the call log still has every request) rather than
    # committed by the runner's thread before it leaves, which held each read back.
    reserve_reads = False
    # A sync with one item and no listing (Payofin's catalogue): the item is written at start.
    streams: ClassVar[bool] = True

    def title(self) -> Any:
        raise NotImplementedError

    def first_cursor(self) -> Any:
        return 0

    def list_page(self, client: Any, cursor: Any, params: dict[str, Any]) -> tuple[list, Any]:
        """One listing page from `cursor` (HTTP only): its rows and the next cursor (None: that
        was the last page)."""
        raise NotImplementedError

    def listed(
        self, rows: list[dict[str, Any]], read_at: datetime, counts: SyncCounts
    ) -> list[NewItem]:
        """A listing page as items (the runner's thread, in the page's transaction); the kind
        may write what the listing itself tells (Paynet's subscriptions) with the read guard,
        counted in `counts`."""
        raise NotImplementedError

    def single_item(self) -> NewItem | None:
        """The one item of a sync that does not stream (`streams = False`)."""
        return None

    def mirrored(self) -> QuerySet:
        """The mirrored records a complete listing names (vanished: those it did not)."""
        raise NotImplementedError

    def report_vanished(self, records: list[Model]) -> int:
        """Records of the mirror a complete listing no longer names: report those not reported
        yet (an open drift entry each); return how many were new."""
        from django.contrib.contenttypes.models import ContentType

        from upstream.history.drift import drift_missing
        from upstream.models import Drift

        if not records:
            return 0
        model = type(records[0])
        known = set(
            Drift.objects.filter(
                content_type=ContentType.objects.get_for_model(model),
                object_id__in=[r.pk for r in records],
                field="",
                state=Drift.State.OPEN,
            ).values_list("object_id", flat=True)
        )
        new = [(r.pk, str(r)) for r in records if r.pk not in known]
        drift_missing(model, new)
        return len(new)

    # The runner's hooks --------------------------------------------------------------------

    def push(self, client: Any, item: Any) -> Any:
        if "listing" in item.payload:
            # The item of a listing that failed: retried alone it cannot read the list on (its
            # job's other items are done); the next sync reads it whole.
            raise UpstreamError(
                text(gettext_noop("The list is read again, whole, by the next sync."))
            )
        return super().push(client, item)

    def settle(self, client: Any, item: Any) -> Any | None:
        return self.push(client, item)

    def listing(self, job: Job, reserve: Any, gate: BreakerGate | None) -> Listing | None:
        state = (job.params or {}).get("listing")
        if not self.streams or not state or state.get("closed"):
            return None
        return Listing(job, self, reserve, gate)

    def finished(self, job: Job) -> None:
        """The job closed: report what vanished (a complete listing only) and keep its summary."""
        listing = (job.params or {}).get("listing") or {}
        summary = _summarize(job.pk)
        for key, value in (listing.get("counts") or {}).items():
            summary[key] = summary.get(key, 0) + value
        complete = listing.get("complete", not self.streams) and not job.cancel_requested
        if self.streams and complete and not job.params.get("since"):
            summary["vanished"] += self._vanished(job)
        summary["failed"] = job.failed
        params = {**job.params, "summary": summary}
        Job.objects.filter(pk=job.pk).update(params=params)
        job.params = params

    def _vanished(self, job: Job) -> int:
        named = (
            JobItem.objects.filter(job_id=job.pk, target_type=self.target_type)
            .exclude(target_id="")
            .annotate(pk_value=Cast("target_id", BigIntegerField()))
            .values("pk_value")
        )
        gone = self.mirrored().exclude(pk__in=named).order_by("pk")
        count, batch = 0, []
        for record in gone.iterator(chunk_size=500):
            batch.append(record)
            if len(batch) >= 500:
                count += self.report_vanished(batch)
                batch = []
        return count + self.report_vanished(batch)


def _summarize(job_id: int) -> dict[str, int]:
    """Sum the items' results (streamed: a sync of a million records has many items)."""
    summary = {"seen": 0, "created": 0, "updated": 0, "unchanged": 0, "vanished": 0, "held": 0}
    results = JobItem.objects.filter(job_id=job_id, outcome=JobItem.Outcome.OK).values_list(
        "result", flat=True
    )
    for result in results.iterator(chunk_size=2000):
        for key in summary:
            summary[key] += int((result or {}).get(key) or 0)
    return summary


# --- Start: one sync per upstream at a time ---------------------------------------------------


def sync_start(
    service: str, *, actor: Any = None, since: date | None = None, enqueue: bool = True
) -> tuple[Job, bool]:
    """Create `service`'s sync job, or answer with the one queued or running: (job, created).

    The database decides (the constraint job_one_active_sync): two starts at the same moment,
    in two processes, make one job. `enqueue=False`: the caller runs it (`manage.py sync`, the
    periodic task).
    """
    kind = sync_kind(service)
    handler = kind_for(kind)
    assert isinstance(handler, SyncKind)
    params: dict[str, Any] = {}
    if since is not None:
        params["since"] = since.isoformat()
    if handler.streams:
        params["listing"] = {"cursor": handler.first_cursor(), "closed": False}
    title = handler.title()
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                title=str(title)[:200],
                title_text=to_json(title),
                params=params,
                created_by=actor if actor is not None and actor.is_authenticated else None,
                total=0,
                prepared=0 if handler.streams else None,
            )
            single = None if handler.streams else handler.single_item()
            if single is not None:
                JobItem.objects.create(
                    job=job,
                    position=1,
                    target_type=handler.target_type,
                    target_id="",
                    target_repr=single.target_repr[:200],
                    payload=single.payload,
                )
                Job.objects.filter(pk=job.pk).update(total=1)
                job.total = 1
            if enqueue:
                job_enqueue(job)
    except IntegrityError:
        running = Job.objects.filter(kind=kind, state__in=Job.ACTIVE_STATES).first()
        if running is None:
            raise  # another constraint: not a sync already running
        return running, False
    return job, True


def running_sync(service: str) -> Job | None:
    return Job.objects.filter(kind=sync_kind(service), state__in=Job.ACTIVE_STATES).first()


# --- The listing: pages read ahead in a pool thread, written by the runner's thread ----------


@dataclass
class Page:
    cursor: Any
    next_cursor: Any
    rows: list[dict[str, Any]]
    read_at: datetime
    exchanges: list[Exchange] = field(default_factory=list)
    error: Exception | None = None


class _ListingRecorder:
    """A listing request's exchanges, written as call rows with its page by the runner's thread
    (pool threads never touch the database); the breaker hears each."""

    def __init__(self, job: Job, handler: SyncKind, reserve: Any, gate: BreakerGate | None):
        self.job, self.handler, self.reserve, self.gate = job, handler, reserve, gate
        self.exchanges: list[Exchange] = []

    def started(self, exchange: Exchange) -> None:
        # Written with the page (a read: see SyncKind.reserve_reads).
        if self.gate is not None:
            self.gate.before(exchange)

    def finished(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if self.gate is not None:
            self.gate.after(exchange)


def _call(job: Job, exchange: Exchange) -> UpstreamCall:
    return upstream_call_from_exchange(
        exchange, actor_id=job.created_by_id, job_id=job.pk, target_repr="listing"
    )


class Listing:
    """The job's listing during one run (see the module doc). A context manager: leaving it
    stops the reading thread, so the run's pool can shut down."""

    def __init__(self, job: Job, handler: SyncKind, reserve: Any, gate: BreakerGate | None):
        self.job, self.handler, self.reserve, self.gate = job, handler, reserve, gate
        row = Job.objects.values_list("params", "prepared").get(pk=job.pk)
        self.params: dict[str, Any] = row[0] or {}
        self.prepared: int = row[1] or 0
        self.open = not self.params.get("listing", {}).get("closed")
        self.pages: queue.Queue[Page] = queue.Queue(maxsize=PAGES_AHEAD)
        self._stop = threading.Event()
        self._reading = False
        self._slots: SlotGate | None = None

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def start(self, pool: Executor, slots: SlotGate | None = None) -> None:
        """Read the listing in one of the pool's threads, each page within the run's `slots`."""
        if self.open and not self._reading:
            self._reading = True
            self._slots = slots
            pool.submit(self._read, self.params["listing"]["cursor"])

    def _read(self, cursor: Any) -> None:
        while not self._stop.is_set():
            recorder = _ListingRecorder(self.job, self.handler, self.reserve, self.gate)
            client = self.handler.make_client(recorder)
            read_at = timezone.now()
            try:
                if self._slots is None:
                    rows, next_cursor = self.handler.list_page(client, cursor, self.params)
                else:
                    # The gate shut (the run is ending) before a slot was free: stop reading.
                    read = self._slots.run(
                        lambda: None, self.handler.list_page, client, cursor, self.params
                    )
                    if read is None:
                        return
                    rows, next_cursor = read
                page = Page(cursor, next_cursor, list(rows), read_at, recorder.exchanges)
            except BaseException as error:  # the upstream's failure, or ours: the listing ends
                if isinstance(error, Exception) and not isinstance(error, UpstreamError):
                    logger.exception("job %s: reading the listing failed", self.job.pk)
                page = Page(cursor, None, [], read_at, recorder.exchanges, error)
            while not self._stop.is_set():
                try:
                    self.pages.put(page, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def pump(self, *, stopped: bool = False) -> int:
        """Write the pages read so far (the runner's thread); return how many items it wrote.
        `stopped`: the job was cancelled; the listing is closed unfinished."""
        if not self.open:
            return 0
        if stopped:
            self._close(complete=False)
            return 0
        written = 0
        while self.open:
            try:
                page = self.pages.get_nowait()
            except queue.Empty:
                break
            if page.error is not None and not isinstance(page.error, Exception):
                raise page.error  # the process is stopping (an interrupt): so does its run
            written += self._write(page)
        return written

    def _write(self, page: Page) -> int:
        now = timezone.now()
        listing = {"cursor": page.next_cursor, "closed": page.next_cursor is None}
        if page.error is not None:
            listing = {"cursor": page.cursor, "closed": True, "complete": False}
        elif page.next_cursor is None:
            listing["complete"] = True
        params = {**self.params, "listing": listing}
        with transaction.atomic():
            counts = SyncCounts()
            built = [] if page.error is not None else self._items(page, counts)
            listing["counts"] = _added(self.params.get("listing", {}).get("counts"), counts)
            extra = 1 if page.error is not None else 0
            moved = Job.objects.filter(pk=self.job.pk, prepared=self.prepared).update(
                prepared=F("prepared") + len(built) + extra,
                total=F("total") + len(built) + extra,
                params=params,
                heartbeat_at=now,
            )
            if not moved:
                # Another run of this job wrote this page first: it reads the listing on.
                transaction.set_rollback(True)
                self._stop.set()
                self.open = False
                return 0
            _write_calls(self.job, page.exchanges)
            items = [
                JobItem(
                    job_id=self.job.pk,
                    position=position,
                    target_type=self.handler.target_type,
                    target_id=str(new.target.pk) if new.target is not None else "",
                    target_repr=(new.target_repr or str(new.target))[:200],
                    payload=new.payload,
                )
                for position, new in enumerate(built, start=self.prepared + 1)
            ]
            if page.error is not None:
                items.append(self._failed_item(page, now))
            # One lean write (upstream.rows): a sync writes an item per record it reads.
            insert_rows(items, new_ids=False)
        breaker_record(page.exchanges)
        self.prepared += len(items)
        self.params = params
        self.open = not listing["closed"]
        return len(built)

    def _items(self, page: Page, counts: SyncCounts) -> list[NewItem]:
        job = self.job
        with history_source(
            self.handler.history_kind, actor_id=job.created_by_id, job_id=job.pk, keep_outer=True
        ):
            return self.handler.listed(page.rows, page.read_at, counts)

    def _failed_item(self, page: Page, now: datetime) -> JobItem:
        error = page.error
        return JobItem(
            job_id=self.job.pk,
            position=self.prepared + 1,
            target_type="",
            target_id="",
            target_repr=f"listing ({page.cursor})"[:200],
            payload={"listing": page.cursor},
            state=JobItem.State.DONE,
            outcome=JobItem.Outcome.FAILED,
            **message_fields(
                text(
                    gettext_noop("The listing could not be read on from here: %(error)s"),
                    error=str(error),
                )
            ),
            upstream_code=str(getattr(error, "upstream_code", "") or "")[:32],
            finished_at=now,
            attempts=1,
        )

    def _close(self, *, complete: bool) -> None:
        listing = {**self.params.get("listing", {}), "closed": True, "complete": complete}
        self.params = {**self.params, "listing": listing}
        Job.objects.filter(pk=self.job.pk).update(params=self.params)
        self._stop.set()
        self.open = False


def job_items_retarget(targets: dict[int, str]) -> None:
    """Set items' target ids ({item id: target id}): a sync's items whose record was new to the
    mirror, written now. One statement run for many rows, not an ORM update per item."""
    from django.db import connection

    meta = JobItem._meta
    qn = connection.ops.quote_name
    sql = "UPDATE {} SET {} = %s WHERE {} = %s".format(  # noqa: S608 (names from the meta)
        qn(meta.db_table), qn(meta.get_field("target_id").column), qn(meta.pk.column)
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(target, pk) for pk, target in targets.items()])


def _added(before: dict[str, int] | None, counts: SyncCounts) -> dict[str, int]:
    """The listing's own writes so far (Paynet's subscriptions, WiseCP's new invoices)."""
    before = before or {}
    now = {
        "seen": counts.created + counts.updated + counts.unchanged + counts.held,
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "held": counts.held,
    }
    return {key: before.get(key, 0) + value for key, value in now.items()}


def _write_calls(job: Job, exchanges: list[Exchange]) -> None:
    from upstream.pushes.runner.send import finish_reserved_calls

    reserved, new = [], []
    for exchange in exchanges:
        call = _call(job, exchange)
        if exchange.call_id is not None:
            call.pk = exchange.call_id
            reserved.append(call)
        else:
            new.append(call)
    new += finish_reserved_calls(reserved)
    insert_rows(new, new_ids=True)


# --- What the dashboard and the command show --------------------------------------------------


@dataclass(frozen=True)
class MirrorAge:
    service: str
    last: Job | None  # the last finished sync
    running: Job | None
    late: bool
    failed: bool

    @property
    def as_of(self) -> datetime | None:
        """The mirror holds the upstream as read from this moment on (the last sync's start)."""
        return self.last.started_at if self.last is not None else None

    @property
    def took(self) -> timedelta | None:
        last = self.last
        if last is None or last.started_at is None or last.finished_at is None:
            return None
        return last.finished_at - last.started_at


def mirror_age(service: str, now: datetime | None = None) -> MirrorAge:
    """The last sync of `service`, whether one runs, and whether the mirror is late (its last
    good sync is older than twice SYNC_INTERVAL_SECONDS) or the last sync failed."""
    now = now or timezone.now()
    kind = sync_kind(service)
    finished = Job.objects.filter(kind=kind, state__in=Job.FINISHED_STATES).order_by(
        "-created_at", "-id"
    )
    last = finished.first()
    running = running_sync(service)
    good = finished.filter(state=Job.State.SUCCEEDED).only("started_at").first()
    interval = settings.SYNC_INTERVAL_SECONDS
    late = bool(interval) and (
        good is None
        or good.started_at is None
        or now - good.started_at > timedelta(seconds=2 * interval)
    )
    failed = last is not None and last.state in (Job.State.FAILED, Job.State.PARTIALLY_FAILED)
    return MirrorAge(service, last, running, late, failed)


def summary_of(job: Job) -> dict[str, int] | None:
    return (job.params or {}).get("summary")


# Records that changed, listed on a sync job's page at most.
CHANGED_SHOWN = 50


def sync_page(job: Job) -> dict[str, Any] | None:
    """What a sync job's page shows beside the counters: the listing's state, the figures (once
    it ended) and the items whose records changed (created, updated or vanished)."""
    from django.db.models import Q

    if not is_sync_kind(job.kind):
        return None
    try:
        handler = kind_for(job.kind)
    except LookupError:
        return None
    listing = (job.params or {}).get("listing") or {}
    changed = list(
        job.items.filter(outcome=JobItem.Outcome.OK)
        .filter(Q(result__created__gt=0) | Q(result__updated__gt=0) | Q(result__vanished__gt=0))
        .order_by("position")[:CHANGED_SHOWN]
    )
    for item in changed:
        item.description = handler.describe(item.result)
    return {
        "listing_open": bool(listing) and not listing.get("closed"),
        "listing_failed": bool(listing) and listing.get("closed") and not listing.get("complete"),
        "summary": summary_of(job),
        "changed": changed,
    }
