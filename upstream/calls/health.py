"""Upstream health: per upstream, its mode, its circuit breaker and what the call log says about
the last minutes. The API's `GET /api/upstreams/` and the dashboard read `upstream_health()`.

Cheap however long the call log grows: the window's counts and its p95 are ranges of the
(service, outcome, created_at) index bounded to the window, and the last success is the first
entry of one such range; seven queries in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone

from upstream.calls.breaker import breakers_get, service_label
from upstream.calls.modes import upstream_mode
from upstream.models import Outcome, Service, UpstreamCall

WINDOW = timedelta(minutes=15)
# Calls that got an answer or gave up; a pending call is still on its way.
FINISHED = [Outcome.OK, Outcome.REJECTED, Outcome.FAILED, Outcome.IN_DOUBT]
# A failure of the upstream (transport, timeout, 5xx, unreadable), not a refusal it meant.
ERRORS = (Outcome.FAILED, Outcome.IN_DOUBT)


@dataclass(frozen=True)
class UpstreamHealth:
    service: str
    label: str
    # "sandbox" when the upstream's base URL is the local simulator, else "live".
    mode: str
    # "closed", "open" or "half_open" (the cooldown is over: the next call is the probe).
    breaker: str
    # Seconds before the breaker lets a call through (0: now).
    retry_after: int
    consecutive_failures: int
    last_success_at: datetime | None
    # Over the window: finished calls, the share of them that failed, their 95th percentile
    # duration, and the writes among them left in doubt (sent, no trustworthy answer).
    calls: int
    error_rate: float | None
    p95_ms: int | None
    in_doubt: int


def upstream_health(
    *, now: datetime | None = None, window: timedelta = WINDOW
) -> list[UpstreamHealth]:
    """Each upstream's health, in the order of `Service`."""
    now = now or timezone.now()
    since = now - window
    services = list(Service.values)
    breakers = breakers_get(services)
    recent = UpstreamCall.objects.filter(
        service__in=services, outcome__in=FINISHED, created_at__gte=since, created_at__lte=now
    )
    counts: dict[str, dict[str, int]] = {s: {} for s in services}
    for service, outcome, n in (
        recent.order_by().values_list("service", "outcome").annotate(n=Count("*"))
    ):
        counts[service][outcome] = n
    health = []
    for service in services:
        by_outcome = counts[service]
        calls = sum(by_outcome.values())
        errors = sum(by_outcome.get(o, 0) for o in ERRORS)
        breaker = breakers[service]
        health.append(
            UpstreamHealth(
                service=service,
                label=service_label(service),
                mode=upstream_mode(service),
                breaker=breaker.shown(now),
                retry_after=breaker.retry_after(now),
                consecutive_failures=breaker.failures,
                last_success_at=(
                    UpstreamCall.objects.filter(service=service, outcome=Outcome.OK)
                    .order_by("-created_at")
                    .values_list("created_at", flat=True)
                    .first()
                ),
                calls=calls,
                error_rate=round(errors / calls, 4) if calls else None,
                p95_ms=_p95(recent.filter(service=service), calls),
                in_doubt=by_outcome.get(Outcome.IN_DOUBT, 0),
            )
        )
    return health


def _p95(calls, count: int) -> int | None:
    """The nearest-rank 95th percentile of the calls' durations (portable: no percentile SQL)."""
    if not count:
        return None
    rank = math.ceil(0.95 * count)
    durations = calls.order_by("duration_ms").values_list("duration_ms", flat=True)
    return next(iter(durations[rank - 1 : rank]), None)
