"""Each upstream's concurrency and rate caps, shared by every process that calls it.

`*_CONCURRENCY` is how many requests may be in flight toward an upstream, counted across every
worker and web process; `*_RATE_LIMIT` how many it may get a second. The cap is cut into *slots*
and leased per run, never per request (decision 018): a job's run (a push, a refresh, a sync)
asks for up to its kind's concurrency when it starts and gets what is free, a single push asks for
one. The lease is a row (`UpstreamSlotLease`), renewed with the run's other leases
(`runner.leases.renew_leases`); a holder that died stops renewing and its slots come back when the
row expires (the next grant, or the sweep, deletes it).

Inside a process nothing touches the database per request: the run's `SlotGate` lets at most
`granted` of its threads send at a time, and the process's token bucket (`client.rate_limiter`)
runs at the share of the rate cap its holders' slots are worth (granted / cap).

Who gets slots is `allocate`: higher priority first (a single push, then staff's bulk pushes,
then reads staff asked for, then background work such as a periodic sync), an equal split between
holders of one priority. A holder reads the table every `CHECK_EVERY` seconds (one query on a
table of a few rows): holding more than its share, it lets fewer threads send and writes the lower
count once its requests in flight are down to it; holding less, it takes what is free. So a staff
push that finds a periodic sync holding every slot has them within about a second plus one
request, and the granted slots never add up to more than the cap.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from upstream.calls.client import rate_limiter
from upstream.models import UpstreamSlotLease

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Who goes first when slots are short (higher first).
PRIORITY_SINGLE = 40  # one record's push in a web request: staff wait for its answer
PRIORITY_PUSH = 30  # a bulk push staff launched (approved, retried, resumed)
PRIORITY_READ = 20  # a read staff asked for (a refresh of a selection)
PRIORITY_BACKGROUND = 10  # work nobody waits for: a periodic sync, a job without a creator

# How often a holder reads the table (to give slots back, or take free ones).
CHECK_EVERY = 1.0
# How often a holder with no slot looks for one.
WAIT_POLL = 0.2
# How long a single push waits for its slot before it goes anyway (counted over the cap, which
# the others then give back): a dead holder's slots must not hold staff's change for a lease.
SINGLE_WAIT_SECONDS = 5.0


def slot_cap(service: str) -> int:
    """The upstream's concurrency cap (`<SERVICE>_CONCURRENCY`); 0: not shared (no setting)."""
    if not service:
        return 0
    return max(0, int(getattr(settings, f"{service.upper()}_CONCURRENCY", 0) or 0))


def slot_rate(service: str) -> float:
    """The upstream's rate cap (`<SERVICE>_RATE_LIMIT`, requests a second); 0: none."""
    return float(getattr(settings, f"{service.upper()}_RATE_LIMIT", 0) or 0)


@dataclass(frozen=True)
class Claim:
    holder: str
    priority: int
    ask: int
    granted: int
    since: datetime


def allocate(cap: int, claims: list[Claim]) -> dict[str, int]:
    """Each holder's share of `cap` slots: by priority (higher first, a lower one gets what is
    left), split evenly between holders of one priority (the older first for a remainder), never
    more than a holder asked for."""
    targets = {c.holder: 0 for c in claims}
    left = cap
    for priority in sorted({c.priority for c in claims}, reverse=True):
        group = sorted(
            (c for c in claims if c.priority == priority), key=lambda c: (c.since, c.holder)
        )
        while left > 0:
            hungry = [c for c in group if targets[c.holder] < c.ask]
            if not hungry:
                break
            share = max(1, left // len(hungry))
            for c in hungry:
                give = min(share, c.ask - targets[c.holder], left)
                targets[c.holder] += give
                left -= give
                if not left:
                    break
    return targets


class SlotGate:
    """A run's threads as its slots allow: at most `limit` inside at a time (a resizable
    semaphore). Closed when the run ends, so a thread still waiting returns instead of sending."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._limit = limit
        self._active = 0
        self._closed = False

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def active(self) -> int:
        return self._active

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self._limit = limit
            self._cond.notify_all()

    def acquire(self) -> bool:
        """Wait for room; False when the gate was closed meanwhile (send nothing)."""
        with self._cond:
            while not self._closed and self._active >= self._limit:
                self._cond.wait()
            if self._closed:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def run(self, closed: Callable[[], T], work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` once there is room; `closed()` if the gate closed first."""
        if not self.acquire():
            return closed()
        try:
            return work(*args)
        finally:
            self.release()

    def __enter__(self) -> SlotGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What this process's holders were granted, per upstream: its token bucket runs at their share.
_process_grants: dict[str, dict[str, int]] = defaultdict(dict)
_process_lock = threading.Lock()


def _process_share(service: str, holder: str, granted: int | None) -> None:
    """Set this process's share of the upstream's rate cap after a holder's grant changed
    (None: the holder is gone). A process holding no lease (a call outside any run) keeps the
    whole rate."""
    rate = slot_rate(service)
    with _process_lock:
        grants = _process_grants[service]
        if granted is None:
            grants.pop(holder, None)
        else:
            grants[holder] = granted
        held = sum(grants.values())
        holders = bool(grants)
        bucket = rate_limiter(service, rate)
        if bucket is None:
            return
        cap = slot_cap(service) or 1
        # A holder with no slot sends nothing (its gate is shut); one slot's worth keeps the
        # bucket usable for the process's other calls.
        bucket.set_rate(rate * min(1.0, max(held, 1) / cap) if holders else rate)


class SlotLease:
    """One run's share of an upstream's cap (see the module doc).

    `start()` registers and takes what is free now (possibly nothing); `tick()`, called often by
    the run's own thread, reads the table every CHECK_EVERY and gives back or takes slots;
    `release()` deletes the row. `gate` is what the run's threads pass through. A run of a kind
    without an upstream, or an upstream without a cap setting, is not counted: `enabled` is
    False and the gate lets `ask` threads through.
    """

    def __init__(
        self,
        service: str,
        *,
        holder: str,
        ask: int,
        priority: int,
        job_id: int | None = None,
        lease: timedelta | None = None,
    ) -> None:
        self.service = service
        self.holder = holder
        self.priority = priority
        self.job_id = job_id
        self.cap = slot_cap(service)
        self.enabled = self.cap > 0
        self.ask = max(1, min(ask, self.cap) if self.enabled else ask)
        self.lease = lease
        self.granted = 0 if self.enabled else self.ask
        self.gate = SlotGate(self.granted)
        self._shrink_to: int | None = None
        self._next_check = 0.0
        self._started = False

    # --- the table, under the upstream's lock ---------------------------------------------

    def _lease(self) -> timedelta:
        return self.lease or timedelta(seconds=settings.JOBS_LEASE_SECONDS)

    def start(self, *, force: bool = False) -> int:
        """Register and take what is free now, up to this run's share; return the grant.
        `force` takes at least one slot even over the cap (a single push that waited enough)."""
        if not self.enabled:
            return self.granted
        self._started = True
        self._grant(force=force)
        return self.granted

    def _grant(self, *, force: bool = False) -> None:
        now = timezone.now()
        with _upstream_lock(self.service):
            UpstreamSlotLease.objects.filter(service=self.service, expires_at__lte=now).delete()
            rows = list(UpstreamSlotLease.objects.filter(service=self.service))
            mine = next((r for r in rows if r.holder == self.holder), None)
            others = [r for r in rows if r.holder != self.holder]
            since = mine.since if mine is not None else now
            claims = [_claim(r) for r in others]
            claims.append(Claim(self.holder, self.priority, self.ask, self.granted, since))
            target = allocate(self.cap, claims)[self.holder]
            free = self.cap - sum(r.granted for r in others)
            granted = max(self.granted, min(target, free))
            if force:
                granted = max(granted, 1)
            UpstreamSlotLease.objects.update_or_create(
                service=self.service,
                holder=self.holder,
                defaults={
                    "job_id": self.job_id,
                    "priority": self.priority,
                    "ask": self.ask,
                    "granted": granted,
                    "since": since,
                    "expires_at": now + self._lease(),
                },
            )
        self._set(granted)

    def _set(self, granted: int) -> None:
        grew = granted > self.granted
        self.granted = granted
        if grew:
            # The row says so first, then the threads and the bucket: never over the cap.
            self.gate.set_limit(granted)
        _process_share(self.service, self.holder, granted)

    # --- the run's own thread -----------------------------------------------------------

    def tick(self) -> int:
        """Called by the run's thread between its other work; cheap when nothing is due."""
        if not self.enabled:
            return self.granted
        if self._shrink_to is not None and self.gate.active < self.granted:
            self._give_back()
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + (CHECK_EVERY if self.granted else WAIT_POLL)
            self.check()
        return self.granted

    def check(self) -> None:
        """Read the upstream's holders and follow this run's share: give back what others of
        higher (or equal) priority need, take what is free."""
        now = timezone.now()
        rows = list(UpstreamSlotLease.objects.filter(service=self.service, expires_at__gt=now))
        mine = next((r for r in rows if r.holder == self.holder), None)
        if mine is None:
            # Our row expired and was taken away (this process stalled past its lease): send
            # nothing more until the slots are ours again.
            self.gate.set_limit(0)
            self._shrink_to = None
            self.granted = 0
            self._grant()
            return
        target = allocate(self.cap, [_claim(r) for r in rows])[self.holder]
        if target < self.granted:
            if self._shrink_to is None or target < self._shrink_to:
                # Fewer threads from now on; the row comes down as the requests in flight do
                # (until then they still count as ours).
                self._shrink_to = target
                self.gate.set_limit(target)
                _process_share(self.service, self.holder, target)
            if self.gate.active < self.granted:
                self._give_back()
        elif target > self.granted and self._shrink_to is None:
            free = self.cap - sum(r.granted for r in rows)
            if free > 0:
                self._grant()

    def _give_back(self) -> None:
        """Lower the row to the requests still in flight, down to the target at most."""
        target = self._shrink_to
        assert target is not None
        level = max(target, self.gate.active)
        UpstreamSlotLease.objects.filter(service=self.service, holder=self.holder).update(
            granted=level
        )
        self.granted = level
        if level == target:
            self._shrink_to = None

    def wait_for_slot(self, *, timeout: float | None = None) -> int:
        """Poll until at least one slot is granted (or `timeout` passes); return the grant."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.enabled and not self.granted:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(WAIT_POLL)
            self.tick()
        return self.granted

    def release(self) -> None:
        """The run is over: its row goes, and the process's share with it."""
        self.gate.close()
        if not self._started:
            return
        self._started = False
        _process_share(self.service, self.holder, None)
        try:
            UpstreamSlotLease.objects.filter(service=self.service, holder=self.holder).delete()
        except DatabaseError:
            # The database is away (the run is ending because of it): the row runs out with
            # its lease, or the worker gives it back once the database is back.
            logger.warning("%s: could not give back the slots of %s", self.service, self.holder)

    def __enter__(self) -> SlotLease:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _claim(row: UpstreamSlotLease) -> Claim:
    return Claim(row.holder, row.priority, row.ask, row.granted, row.since)


@contextmanager
def _upstream_lock(service: str) -> Iterator[None]:
    """One grant at a time per upstream: SQLite's IMMEDIATE transaction lets one writer in;
    PostgreSQL takes a transaction-scoped advisory lock named after the upstream (a row lock
    would not stop two first holders inserting at once)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s)",
                    [zlib.crc32(f"upstream-slots:{service}".encode())],
                )
        yield


def renew_slots(holder: str, until: datetime) -> int:
    """The holder is alive: its slots are kept until `until` (with its other leases)."""
    return UpstreamSlotLease.objects.filter(holder=holder).update(expires_at=until)


def release_expired_slots() -> int:
    """The slots of holders that stopped renewing (killed) come back; the sweep runs this."""
    deleted, _ = UpstreamSlotLease.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def slots_in_use(service: str) -> list[dict[str, Any]]:
    """The upstream's holders now (the dashboard, tests)."""
    return list(
        UpstreamSlotLease.objects.filter(service=service, expires_at__gt=timezone.now())
        .order_by("-priority", "since")
        .values("holder", "job_id", "priority", "ask", "granted", "since", "expires_at")
    )


@contextmanager
def single_slot(
    service: str, *, holder: str, job_id: int | None, lease: timedelta
) -> Iterator[None]:
    """One slot for a single push's request, first in line (PRIORITY_SINGLE): the holders give
    one back within CHECK_EVERY and a request. After SINGLE_WAIT_SECONDS it is taken anyway,
    over the cap (the others then give one back), so a dead holder's slots never keep staff's
    one change waiting for a whole lease."""
    slots = SlotLease(
        service, holder=holder, ask=1, priority=PRIORITY_SINGLE, job_id=job_id, lease=lease
    )
    try:
        if not slots.start() and not slots.wait_for_slot(timeout=SINGLE_WAIT_SECONDS):
            logger.warning(
                "%s: no slot free for a single push after %ss; sent over the cap",
                service,
                SINGLE_WAIT_SECONDS,
            )
            slots.start(force=True)
        yield
    finally:
        slots.release()
