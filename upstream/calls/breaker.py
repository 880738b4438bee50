"""The circuit breaker of each upstream, shared by every web and worker process.

Closed: calls go. `BREAKER_FAILURES` consecutive failed calls (a transport error, a timeout, a
5xx, an unreadable answer) open it; an answer the upstream meant, a refusal included, resets the
count, and a 429 neither counts nor resets. Open: for `BREAKER_COOLDOWN_SECONDS` nothing is sent;
new pushes are refused before anything is recorded (UpstreamUnavailable) and running jobs put
their items back as pending. Then one sender takes the probe (half open) and one call goes: an
answer closes the breaker, a failure opens it for another cooldown.

The state is one database row per upstream (UpstreamBreaker), so every process sees the same
breaker with no other server. Each change is one conditional UPDATE or is made under the row's
lock (an IMMEDIATE transaction on SQLite), so two processes never both take the probe. Worker
threads never touch the database: they ask a BreakerGate, their process's view of the breaker,
which the runner's thread keeps in step with the row, and which stops a job's threads at once
when their own calls fail in a row.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.calls.client import Exchange
from upstream.calls.errors import UpstreamUnavailable
from upstream.models import Service, UpstreamBreaker

CLOSED = UpstreamBreaker.State.CLOSED.value
OPEN = UpstreamBreaker.State.OPEN.value
HALF_OPEN = UpstreamBreaker.State.HALF_OPEN.value

# What a sender may do now (BreakerGate modes and Admission kinds).
GO = "go"  # closed: send
PROBE = "probe"  # this sender holds the probe: one call, then wait for its answer
WAIT = "wait"  # open, or another sender's probe is out: send nothing

# A sender that finds another's probe out looks again this soon (it usually answers in ms).
PROBE_POLL = timedelta(seconds=2)


def call_verdict(exchange: Exchange) -> bool | None:
    """For the breaker: the upstream answered (True), failed (False) or neither (None).

    An answer the upstream meant is healthy whatever it said, a business refusal included; a
    transport error, a timeout, a 5xx or an unreadable answer is a failure; a 429 asks us to
    slow down, which says nothing about whether the upstream is up; a pending call has no answer.
    """
    if exchange.outcome in ("ok", "rejected"):
        return True
    if exchange.outcome in ("failed", "in_doubt"):
        return None if exchange.status_code == 429 else False
    return None


def _threshold() -> int:
    return max(1, int(settings.BREAKER_FAILURES))


def _cooldown() -> timedelta:
    return timedelta(seconds=max(0.0, float(settings.BREAKER_COOLDOWN_SECONDS)))


def probe_lease() -> timedelta:
    """How long a probe's holder keeps it: long enough for a single push (its attempts and a
    read-back); a holder that died frees it when this runs out."""
    per_attempt = (
        settings.UPSTREAM_CONNECT_TIMEOUT
        + settings.UPSTREAM_READ_TIMEOUT
        + settings.UPSTREAM_BACKOFF_CAP
    )
    return timedelta(seconds=(settings.UPSTREAM_MAX_ATTEMPTS + 1) * per_attempt + 5)


def service_label(service: str) -> str:
    try:
        return str(Service(service).label)
    except ValueError:
        return service


@dataclass(frozen=True)
class Breaker:
    """An upstream's breaker as stored (no row yet: closed)."""

    service: str
    state: str = CLOSED
    failures: int = 0
    opened_at: datetime | None = None
    open_until: datetime | None = None
    probe_holder: str = ""
    probe_until: datetime | None = None

    @classmethod
    def of(cls, row: UpstreamBreaker) -> Breaker:
        return cls(
            service=row.service,
            state=row.state,
            failures=row.failures,
            opened_at=row.opened_at,
            open_until=row.open_until,
            probe_holder=row.probe_holder,
            probe_until=row.probe_until,
        )

    def shown(self, now: datetime) -> str:
        """closed, open or half_open as staff see it: once the cooldown is over the breaker is
        half open (the next call is the probe), whether or not a probe has gone yet."""
        if self.state == OPEN and (self.open_until is None or self.open_until <= now):
            return HALF_OPEN
        return self.state

    def cooling(self, now: datetime) -> bool:
        """Open and within its cooldown: nothing may be sent."""
        return self.state == OPEN and self.open_until is not None and self.open_until > now

    def probe_out(self, now: datetime, holder: str = "") -> bool:
        """Another sender's probe is on its way."""
        return (
            self.state == HALF_OPEN
            and self.probe_holder != holder
            and self.probe_until is not None
            and self.probe_until > now
        )

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until a call may go (0: now)."""
        if self.cooling(now):
            return max(1, math.ceil((self.open_until - now).total_seconds()))
        if self.probe_out(now):
            return max(1, math.ceil(min(self.probe_until - now, PROBE_POLL).total_seconds()))
        return 0


def breaker_get(service: str) -> Breaker:
    row = UpstreamBreaker.objects.filter(pk=service).first()
    return Breaker.of(row) if row is not None else Breaker(service)


def breakers_get(services: Iterable[str]) -> dict[str, Breaker]:
    services = list(services)
    rows = {row.service: Breaker.of(row) for row in UpstreamBreaker.objects.filter(pk__in=services)}
    return {service: rows.get(service, Breaker(service)) for service in services}


def unavailable(breaker: Breaker, now: datetime | None = None) -> UpstreamUnavailable:
    """The refusal staff and API clients get while the breaker keeps calls back."""
    now = now or timezone.now()
    seconds = max(1, breaker.retry_after(now))
    label = service_label(breaker.service)
    if breaker.probe_out(now):
        message = _(
            "%(upstream)s is being checked after repeated failures. Nothing was sent; try again "
            "in %(seconds)s s."
        ) % {"upstream": label, "seconds": seconds}
    else:
        # The threshold that opened it: the stored count goes on growing with the calls that
        # were in flight when it opened ("the last 20 calls failed" with a threshold of 5).
        message = _(
            "%(upstream)s is unavailable: %(count)s calls in a row failed, so calls are paused "
            "(circuit breaker open). Nothing was sent; try again in %(seconds)s s."
        ) % {"upstream": label, "count": _threshold(), "seconds": seconds}
    return UpstreamUnavailable(message, service=breaker.service, retry_after=seconds)


def breaker_require(service: str) -> None:
    """Before a job is queued (a bulk push, a retry, a batch): refuse while the breaker is open.

    Once the cooldown is over the job may be queued; its run sends the probe or waits for it.
    """
    if not service:
        return
    breaker = breaker_get(service)
    now = timezone.now()
    if breaker.cooling(now):
        raise unavailable(breaker, now)


@dataclass(frozen=True)
class Admission:
    """What a sender may do now: GO, PROBE (it holds the probe) or WAIT until `until`."""

    kind: str
    breaker: Breaker
    until: datetime | None = None


def breaker_admit(service: str, holder: str, *, take_probe: bool = True) -> Admission:
    """May `holder` send to the upstream now?

    Closed: GO. Open within its cooldown, or another sender's probe out: WAIT. Once the cooldown
    is over (or the probe's holder is gone), the first sender to ask takes the probe in one
    conditional UPDATE and gets PROBE; `take_probe=False` only looks (WAIT until now).
    """
    breaker = breaker_get(service)
    if breaker.state == CLOSED:
        return Admission(GO, breaker)
    now = timezone.now()
    if breaker.cooling(now):
        return Admission(WAIT, breaker, breaker.open_until)
    if breaker.probe_out(now, holder):
        return Admission(WAIT, breaker, min(breaker.probe_until, now + PROBE_POLL))
    if breaker.state == HALF_OPEN and breaker.probe_holder == holder:
        return Admission(PROBE, breaker)
    if not take_probe:
        return Admission(WAIT, breaker, now)
    until = now + probe_lease()
    taken = (
        UpstreamBreaker.objects.filter(pk=service)
        .filter(
            Q(state=OPEN, open_until__lte=now)
            | Q(state=OPEN, open_until__isnull=True)
            | Q(state=HALF_OPEN, probe_until__lte=now)
            | Q(state=HALF_OPEN, probe_until__isnull=True)
        )
        .update(state=HALF_OPEN, probe_holder=holder, probe_until=until, updated_at=now)
    )
    if taken:
        return Admission(
            PROBE, replace(breaker, state=HALF_OPEN, probe_holder=holder, probe_until=until)
        )
    # Someone else moved it first (took the probe, or its answer closed the breaker): look again.
    return breaker_admit(service, holder, take_probe=False)


def breaker_release_probe(service: str, holder: str) -> None:
    """The holder is done without a verdict (nothing was sent, or only a 429 came back): the
    next sender may take the probe at once."""
    if not service:
        return
    now = timezone.now()
    UpstreamBreaker.objects.filter(pk=service, state=HALF_OPEN, probe_holder=holder).update(
        state=OPEN, open_until=now, probe_holder="", probe_until=None, updated_at=now
    )


def breaker_next(
    breaker: Breaker, verdicts: list[bool], *, now: datetime, threshold: int, cooldown: timedelta
) -> Breaker:
    """The breaker after these call verdicts (oldest first). Pure: the rules in one place.

    Half open: the first verdict is the probe's; an answer closes the breaker, a failure opens it
    for another cooldown. Closed: consecutive failures open it at `threshold`. Open: the count
    goes on but only a probe closes it.
    """
    if not verdicts:
        return breaker
    state = breaker.state
    if state == HALF_OPEN:
        if not verdicts[0]:
            return replace(
                breaker,
                state=OPEN,
                failures=_streak(breaker.failures, verdicts),
                opened_at=now,
                open_until=now + cooldown,
                probe_holder="",
                probe_until=None,
            )
        breaker = replace(
            breaker,
            state=CLOSED,
            opened_at=None,
            open_until=None,
            probe_holder="",
            probe_until=None,
        )
    failures = _streak(breaker.failures, verdicts)
    if breaker.state == CLOSED and failures >= threshold:
        return replace(
            breaker, state=OPEN, failures=failures, opened_at=now, open_until=now + cooldown
        )
    return replace(breaker, failures=failures)


def _streak(failures: int, verdicts: list[bool]) -> int:
    for healthy in verdicts:
        failures = 0 if healthy else failures + 1
    return failures


def _finished_at(exchange: Exchange) -> datetime:
    return exchange.started_at + timedelta(milliseconds=exchange.duration_ms)


def breaker_record(exchanges: Iterable[Exchange]) -> None:
    """Feed finished calls to their upstreams' breakers (from the runner's or request's thread,
    after their rows are written). A healthy batch on a healthy breaker writes nothing."""
    verdicts: dict[str, list[bool]] = defaultdict(list)
    for exchange in sorted(exchanges, key=_finished_at):
        verdict = call_verdict(exchange)
        if verdict is not None and exchange.service:
            verdicts[exchange.service].append(verdict)
    for service, batch in verdicts.items():
        current = breaker_get(service)
        if current.state == CLOSED and current.failures == 0 and all(batch):
            continue

        def record(breaker: Breaker, now: datetime, batch: list[bool] = batch) -> Breaker:
            return breaker_next(
                breaker, batch, now=now, threshold=_threshold(), cooldown=_cooldown()
            )

        _change(service, record)


def breaker_trip(service: str) -> None:
    """Open the breaker now: a process saw `BREAKER_FAILURES` of its own calls fail in a row
    (its gate stopped its threads), whatever other processes' calls did meanwhile."""

    def trip(breaker: Breaker, now: datetime) -> Breaker:
        if breaker.state == OPEN:
            return breaker
        return replace(
            breaker,
            state=OPEN,
            failures=max(breaker.failures, _threshold()),
            opened_at=now,
            open_until=now + _cooldown(),
            probe_holder="",
            probe_until=None,
        )

    _change(service, trip)


def breaker_reset(service: str) -> None:
    """Close the breaker (an operator who knows the upstream is back; tests)."""
    _change(service, lambda b, now: Breaker(service))


def _change(service: str, change: Callable[[Breaker, datetime], Breaker]) -> Breaker:
    """Apply `change(breaker, now)` to the row under its lock; write only what moved."""
    with transaction.atomic():
        rows = UpstreamBreaker.objects.filter(pk=service)
        if connection.features.has_select_for_update:
            rows = rows.select_for_update()
        row = rows.first()
        if row is None:
            # Two processes may create it at once: one insert wins, both then lock the same row.
            UpstreamBreaker.objects.bulk_create(
                [UpstreamBreaker(service=service)], ignore_conflicts=True
            )
            row = rows.get()
        now = timezone.now()
        before = Breaker.of(row)
        after = change(before, now)
        if after != before:
            fields = [
                "state",
                "failures",
                "opened_at",
                "open_until",
                "probe_holder",
                "probe_until",
            ]
            for name in fields:
                setattr(row, name, getattr(after, name))
            row.updated_at = now
            row.save(update_fields=[*fields, "updated_at"])
        return after


class BreakerOpen(Exception):
    """Raised in place of sending a call: the breaker keeps calls back. Nothing was recorded or
    sent for it; the job's item goes back to pending (it is not a failure)."""


class BreakerGate:
    """One process's view of an upstream's breaker, asked by every thread before each call.

    `follow` (the runner's or request's thread) sets it from the database; `before` and `after`
    (any thread, no database) let calls through, stop them, and count this process's failures in
    a row: at the threshold the gate shuts at once (`tripped`), before any flush has told the
    database, so a dead upstream gets a handful of calls from a job, not a chunk of them. The
    count starts from the database's when the gate starts following a state, and from zero after
    an answer; a flush that tells the database nothing new does not restart it (those failures
    may not be written yet).
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._mode = GO
        self._limit = _threshold()
        self._streak = 0
        self._probe_sent = False
        self.tripped = False
        self.admission: Admission | None = None

    def follow(self, admission: Admission) -> None:
        with self._lock:
            first = self.admission is None
            self.admission = admission
            if self.tripped:
                return  # a trip not yet told to the database keeps the gate shut until it is
            if first or admission.kind != self._mode:
                # A new state (a probe to send, a breaker closed or opened elsewhere). Holding
                # the probe still is not new: its one call may be on its way already.
                self._mode = admission.kind
                self._probe_sent = False
                self._streak = 0
                self._limit = max(1, _threshold() - admission.breaker.failures)

    def take_trip(self) -> bool:
        """Did the gate trip since the last call? (The caller then opens the breaker.)"""
        with self._lock:
            tripped, self.tripped = self.tripped, False
            return tripped

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    @property
    def until(self) -> datetime | None:
        """While waiting: when the breaker may let a call through (None: not known yet)."""
        admission = self.admission
        if self.mode != WAIT or admission is None or admission.kind != WAIT:
            return None
        return admission.until

    def before(self, exchange: Exchange) -> None:
        with self._lock:
            if self._mode == GO:
                return
            if self._mode == PROBE and not self._probe_sent:
                self._probe_sent = True
                return
        raise BreakerOpen(self.message())

    def after(self, exchange: Exchange) -> None:
        verdict = call_verdict(exchange)
        with self._lock:
            if self._mode == PROBE and self._probe_sent:
                # The probe's answer: go on, or stop until the database says otherwise.
                self._mode = GO if verdict else WAIT
                self._streak, self._limit = 0, _threshold()
                return
            if verdict is None:
                return
            if verdict:
                self._streak, self._limit = 0, _threshold()
                return
            self._streak += 1
            if self._mode == GO and self._streak >= self._limit:
                self._mode = WAIT
                self.tripped = True

    def message(self) -> str:
        return _(
            "Paused: %(upstream)s is unavailable (circuit breaker open). Nothing was sent for "
            "this item; it goes on by itself once %(upstream)s answers again."
        ) % {"upstream": service_label(self.service)}
