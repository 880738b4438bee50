"""Each upstream's caps shared by every process (upstream/calls/slots.py, decision 018): who is
granted how many slots, giving them back to work that goes first, a dead holder's slots coming
back, the rate split by slots, and a run or a single push sending within its grant."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from upstream.calls import slots as slots_module
from upstream.calls.client import TokenBucket, rate_limiter
from upstream.calls.slots import (
    PRIORITY_BACKGROUND,
    PRIORITY_PUSH,
    PRIORITY_READ,
    PRIORITY_SINGLE,
    Claim,
    SlotGate,
    SlotLease,
    allocate,
    slots_in_use,
)
from upstream.models import Job, UpstreamSlotLease
from upstream.pushes import bulk, runner
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_cancel
from upstream.pushes.kinds import kind_for

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_grants_left_in_this_process():
    """A lease a test left unreleased must not count toward the next test's rate share."""
    slots_module._process_grants.clear()
    yield
    slots_module._process_grants.clear()


def claim(holder: str, priority: int, ask: int, granted: int = 0, at: int = 0) -> Claim:
    return Claim(holder, priority, ask, granted, T0 + timedelta(seconds=at))


# --- allocate: pure --------------------------------------------------------------------------


def test_a_lone_holder_gets_what_it_asks_up_to_the_cap():
    assert allocate(16, [claim("a", PRIORITY_PUSH, 16)]) == {"a": 16}
    assert allocate(16, [claim("a", PRIORITY_PUSH, 40)]) == {"a": 16}
    assert allocate(16, [claim("a", PRIORITY_PUSH, 4)]) == {"a": 4}


def test_higher_priority_goes_first_and_the_lower_gets_what_is_left():
    sync = claim("sync", PRIORITY_BACKGROUND, 16, granted=16, at=0)
    push = claim("push", PRIORITY_PUSH, 16, at=5)
    assert allocate(16, [sync, push]) == {"sync": 0, "push": 16}
    small_push = claim("push", PRIORITY_PUSH, 6, at=5)
    assert allocate(16, [sync, small_push]) == {"sync": 10, "push": 6}
    single = claim("web", PRIORITY_SINGLE, 1, at=9)
    assert allocate(16, [sync, push, single]) == {"sync": 0, "push": 15, "web": 1}


def test_holders_of_one_priority_split_evenly_the_older_first_for_a_remainder():
    a = claim("a", PRIORITY_PUSH, 16, granted=16, at=0)
    b = claim("b", PRIORITY_PUSH, 16, at=1)
    c = claim("c", PRIORITY_PUSH, 16, at=2)
    assert allocate(16, [b, a]) == {"a": 8, "b": 8}
    assert allocate(16, [c, b, a]) == {"a": 6, "b": 5, "c": 5}
    # One that asks less leaves the rest to the others.
    assert allocate(16, [a, claim("b", PRIORITY_PUSH, 2, at=1)]) == {"a": 14, "b": 2}
    assert sum(allocate(3, [claim(str(i), PRIORITY_READ, 4, at=i) for i in range(5)]).values()) == 3


# --- the gate: a resizable semaphore ----------------------------------------------------------


def test_the_gate_lets_limit_threads_in_and_shut_sends_nothing():
    gate = SlotGate(2)
    inside, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def work() -> str:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        release.wait(5)
        with lock:
            inside[0] -= 1
        return "sent"

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(gate.run(lambda: "unsent", work)))
        for _ in range(5)
    ]
    for t in threads:
        t.start()
    for _ in range(100):
        if gate.active == 2:
            break
        threading.Event().wait(0.01)
    assert gate.active == 2
    gate.set_limit(3)
    threading.Event().wait(0.05)
    assert gate.active == 3
    gate.close()  # the run ends: the two still waiting send nothing
    release.set()
    for t in threads:
        t.join(5)
    assert sorted(results) == ["sent", "sent", "sent", "unsent", "unsent"]
    assert peak[0] == 3


# --- the table: grants across holders ---------------------------------------------------------


def lease(holder: str, priority: int = PRIORITY_PUSH, ask: int = 16) -> SlotLease:
    return SlotLease("paynet", holder=holder, ask=ask, priority=priority)


def granted() -> dict[str, int]:
    return dict(UpstreamSlotLease.objects.values_list("holder", "granted"))


def test_a_second_holder_gets_what_is_free_and_waits_for_the_rest(db, settings):
    settings.PAYNET_CONCURRENCY = 16
    first = lease("first", ask=10)
    assert first.start() == 10
    second = lease("second", PRIORITY_BACKGROUND)
    assert second.start() == 6
    third = lease("third", PRIORITY_BACKGROUND)
    assert third.start() == 0  # waiting: registered with nothing
    assert granted() == {"first": 10, "second": 6, "third": 0}
    assert second.gate.limit == 6 and third.gate.limit == 0

    first.release()
    second.check()
    third.check()
    assert sum(granted().values()) <= 16
    # Both of one priority: the older first for the remainder once both have checked.
    second.check()
    third.check()
    assert granted() == {"second": 8, "third": 8}


def test_a_lower_priority_holder_gives_slots_back_once_its_requests_are_down(db, settings):
    settings.PAYNET_CONCURRENCY = 4
    sync = lease("sync", PRIORITY_BACKGROUND, ask=4)
    assert sync.start() == 4
    for _ in range(3):
        assert sync.gate.acquire()  # three of its requests in flight
    push = lease("push", PRIORITY_PUSH, ask=4)
    assert push.start() == 0

    sync.check()
    # Its threads stop at once; the slot nobody uses is given back, the three requests in
    # flight still count as the sync's.
    assert sync.gate.limit == 0
    assert granted() == {"sync": 3, "push": 0}
    push.check()
    assert granted() == {"sync": 3, "push": 1}, "never over the cap while the sync's are out"
    assert push.gate.limit == 1

    sync.gate.release()
    sync.gate.release()
    sync.tick()  # one still out
    assert granted() == {"sync": 1, "push": 1}
    push.check()
    assert granted() == {"sync": 1, "push": 3}
    sync.gate.release()
    sync.tick()
    push.check()
    assert granted() == {"sync": 0, "push": 4}
    assert push.gate.limit == 4 and sync.gate.limit == 0

    push.release()
    sync.check()
    assert granted() == {"sync": 4}


def test_a_dead_holders_slots_come_back_when_its_lease_runs_out(db, settings):
    settings.PAYNET_CONCURRENCY = 4
    dead = lease("dead", ask=4)
    assert dead.start() == 4
    UpstreamSlotLease.objects.filter(holder="dead").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert lease("next", ask=4).start() == 4  # the grant itself drops the expired row
    assert granted() == {"next": 4}

    UpstreamSlotLease.objects.filter(holder="next").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert runner.sweep()["slots_released"] == 1
    assert granted() == {}


def test_a_worker_back_from_a_database_outage_gives_its_runs_slots_back(db, settings):
    settings.PAYNET_CONCURRENCY = 5
    lease("host:123:run1", ask=4).start()
    lease("host:1234:run2", PRIORITY_SINGLE, ask=1).start()  # another process
    runner.sweeper.settle_stopped_runs("host:123:", RuntimeError("outage"))
    assert granted() == {"host:1234:run2": 1}


def test_the_lease_is_renewed_with_the_runs_other_leases(db, settings):
    settings.PAYNET_CONCURRENCY = 4
    held = lease("worker-1", ask=4)
    held.start()
    UpstreamSlotLease.objects.update(expires_at=timezone.now() + timedelta(seconds=1))
    runner.leases.renew_leases(0, "worker-1")
    row = UpstreamSlotLease.objects.get()
    assert row.expires_at > timezone.now() + timedelta(seconds=settings.JOBS_LEASE_SECONDS - 5)


def test_a_holder_whose_row_was_taken_away_sends_nothing_until_it_has_slots_again(db, settings):
    settings.PAYNET_CONCURRENCY = 4
    stalled = lease("stalled", PRIORITY_BACKGROUND, ask=4)
    stalled.start()
    UpstreamSlotLease.objects.filter(holder="stalled").delete()  # expired and swept
    other = lease("other", ask=4)
    assert other.start() == 4
    stalled.check()
    assert stalled.granted == 0 and stalled.gate.limit == 0
    assert granted() == {"other": 4, "stalled": 0}


def test_a_kind_without_a_cap_setting_is_not_counted(db, settings):
    free = SlotLease("nowhere", holder="x", ask=3, priority=PRIORITY_PUSH)
    assert not free.enabled
    assert free.start() == 3 and free.gate.limit == 3
    free.release()
    assert UpstreamSlotLease.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_holders_starting_at_once_in_many_threads_never_exceed_the_cap(settings):
    """The grant's lock: PostgreSQL's advisory lock, SQLite's IMMEDIATE transaction."""
    settings.PAYNET_CONCURRENCY = 10
    grants: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def take(i: int) -> None:
        try:
            start.wait(5)
            grants.append(lease(f"h{i}", ask=4).start())
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sum(grants) == 10
    assert sum(granted().values()) == 10
    assert len(granted()) == 8


# --- the rate: split by slots ----------------------------------------------------------------


def test_a_bucket_takes_a_new_rate_from_now_on():
    now = [0.0]
    bucket = TokenBucket(10.0, 2, clock=lambda: now[0], sleep=lambda s: None)
    bucket.set_rate(2.0)
    assert bucket.burst == 1
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(0.5)


def test_the_process_bucket_runs_at_its_holders_share_of_the_rate(db, settings):
    settings.PAYNET_CONCURRENCY = 16
    settings.PAYNET_RATE_LIMIT = 32.0
    bucket = rate_limiter("paynet", 32.0)
    a = lease("a", ask=4)
    a.start()
    assert bucket.rate == pytest.approx(8.0)  # 4 of 16 slots: a quarter
    b = lease("b", ask=8)
    b.start()
    assert bucket.rate == pytest.approx(24.0)
    b.release()
    a.release()
    assert bucket.rate == pytest.approx(32.0)  # no holder here: the process's calls, as before


# --- runs and single pushes -------------------------------------------------------------------


@pytest.fixture
def mirror(sandbox, db, queued_tasks):
    paynet_sync()


def waiting(n: int):
    ids = list(
        SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
        .order_by("pk")
        .values_list("pk", flat=True)[:n]
    )
    return SubscriptionInvoice.objects.filter(pk__in=ids)


def hold(holder: str, granted: int, priority: int = PRIORITY_SINGLE, seconds: float = 300) -> None:
    """Slots held by another process (its row, renewed for `seconds`, then it died)."""
    now = timezone.now()
    UpstreamSlotLease.objects.create(
        service="paynet",
        holder=holder,
        priority=priority,
        ask=granted,
        granted=granted,
        since=now,
        expires_at=now + timedelta(seconds=seconds),
    )


def test_a_run_sends_no_more_than_its_grant_beside_another_holder(
    sandbox, mirror, operator, settings
):
    settings.PAYNET_CONCURRENCY = 16
    hold("another-worker", 12)
    sandbox.latency(30)
    job = subscription_invoice_set_status_bulk(
        records=waiting(40), status=InvoiceStatus.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)
    seen: list[dict] = []
    tick = SlotLease.tick

    def watch(self: SlotLease) -> int:
        if self.holder != "another-worker" and not seen:
            seen.extend(slots_in_use("paynet"))
        return tick(self)

    with mock.patch.object(SlotLease, "tick", watch):
        bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.succeeded == 40
    assert sandbox.inflight("paynet")["max"] == 4
    assert {(r["holder"], r["granted"]) for r in seen} >= {("another-worker", 12)}
    mine = [r for r in seen if r["holder"] != "another-worker"]
    assert mine and mine[0]["priority"] == PRIORITY_PUSH and mine[0]["job_id"] == job.pk
    assert granted() == {"another-worker": 12}, "the run gave its slots back"


def test_a_run_waits_while_every_slot_is_held_then_takes_a_dead_holders(
    sandbox, mirror, operator, settings
):
    settings.PAYNET_CONCURRENCY = 4
    hold("single-pushes", 4, PRIORITY_SINGLE, seconds=1.0)  # then its process dies
    job = subscription_invoice_set_status_bulk(
        records=waiting(5), status=InvoiceStatus.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)
    started = timezone.now()

    bulk.run_job(job.pk)

    first_write = min(r["at"] for r in sandbox.requests("paynet", "invoice_status_update"))
    assert first_write >= started.timestamp() + 0.9, "sent while every slot was someone else's"
    job.refresh_from_db()
    assert job.succeeded == 5


def test_a_kinds_priority_follows_what_it_does_and_who_launched_it(db, operator):
    push = Job(kind="paynet.invoice_status", created_by=operator)
    assert kind_for("paynet.invoice_status").priority(push) == PRIORITY_PUSH
    refresh = kind_for("paynet.refresh")
    assert refresh.priority(Job(kind="paynet.refresh", created_by=operator)) == PRIORITY_READ
    assert refresh.priority(Job(kind="paynet.refresh")) == PRIORITY_BACKGROUND


def test_a_single_push_holds_a_slot_first_in_line(sandbox, mirror, operator, settings):
    settings.PAYNET_CONCURRENCY = 4
    record = waiting(1).get()
    seen: list[dict] = []
    real = slots_module.SlotLease.start

    def spy(self, **kwargs):
        got = real(self, **kwargs)
        seen.extend(slots_in_use("paynet"))
        return got

    with mock.patch.object(slots_module.SlotLease, "start", spy):
        subscription_invoice_set_status(
            record=record, status=InvoiceStatus.CANCEL, actor=operator, reason="test"
        )
    assert [(r["priority"], r["granted"]) for r in seen] == [(PRIORITY_SINGLE, 1)]
    assert granted() == {}


def test_a_single_push_goes_over_the_cap_rather_than_wait_for_a_dead_holder(
    sandbox, mirror, operator, settings
):
    settings.PAYNET_CONCURRENCY = 4
    hold("hung-worker", 4, PRIORITY_SINGLE)  # never gives anything back
    record = waiting(1).get()
    with mock.patch.object(slots_module, "SINGLE_WAIT_SECONDS", 0.3):
        subscription_invoice_set_status(
            record=record, status=InvoiceStatus.CANCEL, actor=operator, reason="test"
        )
    record.refresh_from_db()
    assert record.status == InvoiceStatus.CANCEL
    assert granted() == {"hung-worker": 4}


def test_a_run_waiting_for_slots_takes_a_cancel_at_once(sandbox, mirror, operator, settings):
    settings.PAYNET_CONCURRENCY = 4
    hold("single-pushes", 4)
    job = subscription_invoice_set_status_bulk(
        records=waiting(5), status=InvoiceStatus.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)
    job_cancel(job=job, actor=operator)

    started = time.monotonic()
    bulk.run_job(job.pk)

    assert time.monotonic() - started < 5
    job.refresh_from_db()
    assert (job.state, job.cancelled) == (Job.State.CANCELLED, 5)
    assert sandbox.requests("paynet", "invoice_status_update") == []


def test_a_run_with_nothing_left_to_send_finishes_without_a_slot(
    sandbox, mirror, operator, settings
):
    """A run that gave every slot back to work that goes first, once its own items are done,
    closes its job rather than wait for a slot it would not use."""
    settings.PAYNET_CONCURRENCY = 4
    job = subscription_invoice_set_status_bulk(
        records=waiting(3), status=InvoiceStatus.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)
    sandbox.latency(300)
    check = SlotLease.check

    def outranked_while_sending(self: SlotLease) -> None:
        # While its last items are out, single pushes come that outrank it for every slot
        # (taken over the cap, as after a long wait).
        sending = Job.objects.get(pk=job.pk).items.filter(state="sending").exists()
        if sending and not UpstreamSlotLease.objects.filter(holder="single-pushes").exists():
            hold("single-pushes", 4)
        check(self)

    started = time.monotonic()
    with (
        mock.patch.object(SlotLease, "check", outranked_while_sending),
        mock.patch.object(slots_module, "CHECK_EVERY", 0.05),
    ):
        bulk.run_job(job.pk)

    assert time.monotonic() - started < 5
    job.refresh_from_db()
    assert (job.state, job.succeeded) == (Job.State.SUCCEEDED, 3)


def test_a_run_sends_at_the_share_of_the_rate_its_slots_are_worth(
    sandbox, mirror, operator, settings
):
    settings.PAYNET_CONCURRENCY = 16
    settings.PAYNET_RATE_LIMIT = 8.0
    hold("another-worker", 8, PRIORITY_PUSH)  # the other half of the cap, and of the rate
    job = subscription_invoice_set_status_bulk(
        records=waiting(12), status=InvoiceStatus.CANCEL, actor=operator, reason="test"
    )
    prepare_job(job.pk)

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.succeeded == 12
    arrivals = sorted(r["at"] for r in sandbox.requests("paynet", "invoice_status_update"))
    # 4 a second (8 of 16 slots) after a burst of one: 11 intervals of a quarter second.
    assert arrivals[-1] - arrivals[0] >= 11 / 4 - 0.3
    assert rate_limiter("paynet", 8.0).rate == pytest.approx(8.0), "the whole rate once alone"
