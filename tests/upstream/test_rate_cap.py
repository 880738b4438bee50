"""The per-upstream rate cap: a token bucket shared by a process's threads, beside the
concurrency cap. Checked by the bucket's own arithmetic and at the sandbox, which notes when
each request arrived."""

from __future__ import annotations

import threading

import pytest

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status_bulk
from subscriptions.sync import paynet_sync
from upstream.calls.client import TokenBucket, rate_burst, rate_limiter
from upstream.models import Job
from upstream.pushes import bulk
from upstream.pushes.bulk import prepare_job


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_bucket_lets_a_burst_go_then_one_request_per_slot():
    time = FakeTime()
    bucket = TokenBucket(4.0, 2, clock=time.clock, sleep=time.sleep)

    waits = []
    for _ in range(6):
        time.now = 0.0  # six callers at the same instant
        waits.append(bucket.acquire())

    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


def test_bucket_refills_at_its_rate_up_to_the_burst():
    time = FakeTime()
    bucket = TokenBucket(10.0, 2, clock=time.clock, sleep=time.sleep)
    assert [bucket.acquire() for _ in range(2)] == [0.0, 0.0]
    time.now = 10.0  # a long quiet spell refills only the burst
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_no_cap_means_no_bucket_and_each_upstream_has_its_own():
    assert rate_limiter("paynet", 0) is None
    assert rate_limiter("paynet", 5) is rate_limiter("paynet", 5)
    assert rate_limiter("paynet", 5) is not rate_limiter("wisecp", 5)
    assert rate_burst(0.5) == 1 and rate_burst(8) == 2 and rate_burst(50) == 10


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def test_a_job_never_sends_more_than_the_cap_plus_its_burst_in_any_second(
    sandbox, db, operator, settings, queued_tasks
):
    paynet_sync()
    settings.PAYNET_RATE_LIMIT = 8
    settings.PAYNET_CONCURRENCY = 16
    ids = list(
        SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").values_list("pk")[:30]
    )
    records = SubscriptionInvoice.objects.filter(pk__in=[i for (i,) in ids])
    job = subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert (job.state, job.succeeded) == (Job.State.SUCCEEDED, 30)
    arrivals = [r["at"] for r in sandbox.requests("paynet", "invoice_status_update")]
    assert len(arrivals) == 30
    assert busiest_second(arrivals) <= 8 + rate_burst(8)
    # 16 threads could send all 30 at once; the cap spreads them over (30 - burst) / 8 s.
    assert max(arrivals) - min(arrivals) >= (30 - rate_burst(8)) / 8 - 0.3
