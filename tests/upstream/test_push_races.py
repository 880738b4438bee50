"""One push at a time per record, across database connections (PostgreSQL: real concurrency).

Single against single, single against a job, job against job: each record reaches Paynet at
most once per change, and the mirror ends equal to Paynet. SQLite's test database cannot show
two connections racing, so these run in the PostgreSQL pass of .ci/run.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import close_old_connections, connections

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from tests.conftest import require_postgres
from tests.subscriptions.helpers import upstream_records
from upstream.calls.errors import PushConflict, PushInDoubt
from upstream.pushes import bulk
from upstream.pushes import single as operations

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mirror(sandbox, monkeypatch, queued_tasks):
    require_postgres()
    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))
    paynet_sync()
    # Paynet answers slowly, so the pushes are surely in flight together.
    sandbox.faults({"kind": "latency", "seconds": 0.2, "operation": "invoice_status_update"})
    return sandbox


def together(*works) -> list[object]:
    """Run each callable in its own thread (its own connection), started at one barrier."""
    start = threading.Barrier(len(works))
    results: list[object] = [None] * len(works)

    def run(i: int, work) -> None:
        try:
            start.wait(timeout=10)
            results[i] = work()
        except BaseException as error:  # handed to the test thread
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(works)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    close_old_connections()
    return results


def single(pk: int, status: int, actor) -> object:
    def work() -> str:
        record = SubscriptionInvoice.objects.select_related("subscription").get(pk=pk)
        try:
            subscription_invoice_set_status(record=record, status=status, actor=actor, reason="r")
        except PushConflict:
            return "conflict"
        except PushInDoubt:
            return "in_doubt"
        return "sent"

    return work


def writes_per_record(sandbox) -> Counter:
    return Counter(e["request"]["invoice_no"] for e in sandbox.ledger("paynet"))


def assert_mirror_equals_paynet(sandbox, pks) -> None:
    upstream = upstream_records(sandbox)
    for record in SubscriptionInvoice.objects.filter(pk__in=pks):
        assert record.status == upstream[record.invoice_id]["status"], record.invoice_no


def waiting_pks(n: int) -> list[int]:
    pks = list(
        SubscriptionInvoice.objects.filter(status=S.WAITING)
        .order_by("pk")
        .values_list("pk", flat=True)[:n]
    )
    assert len(pks) == n
    return pks


def test_two_single_pushes_of_one_record_send_once(mirror, operator, monkeypatch):
    monkeypatch.setattr(operations, "CLAIM_WAIT_SECONDS", 0.05)
    (pk,) = waiting_pks(1)

    outcomes = together(single(pk, S.CANCEL, operator), single(pk, S.EXTERNAL_CHARGED, operator))

    assert sorted(outcomes) == ["conflict", "sent"]
    assert sum(writes_per_record(mirror).values()) == 1
    assert_mirror_equals_paynet(mirror, [pk])


def test_a_second_push_that_waits_sees_the_first_and_does_not_overwrite_it(mirror, operator):
    (pk,) = waiting_pks(1)

    # The default wait outlasts the first push: the second then finds the record changed.
    outcomes = together(single(pk, S.CANCEL, operator), single(pk, S.EXTERNAL_CHARGED, operator))

    assert outcomes.count("sent") == 1 and outcomes.count("conflict") == 1
    assert sum(writes_per_record(mirror).values()) == 1
    assert_mirror_equals_paynet(mirror, [pk])


def test_single_pushes_beside_a_job_never_leave_the_mirror_wrong(mirror, operator):
    pks = waiting_pks(40)
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk__in=pks),
        status=S.CANCEL,
        actor=operator,
        reason="bulk",
    )
    later = pks[::4]  # the operator changes some of them while the job runs

    def run_job() -> dict:
        return bulk.run_job(job.pk)

    results = together(run_job, *[single(pk, S.EXTERNAL_CHARGED, operator) for pk in later])

    assert not any(isinstance(r, BaseException) for r in results), results
    job.refresh_from_db()
    assert job.is_finished
    writes = writes_per_record(mirror)
    assert all(n == 1 for n in writes.values()), writes  # each record changed once
    assert_mirror_equals_paynet(mirror, pks)
    # Where the operator's push went first, the job skipped the record rather than revert it.
    for record in SubscriptionInvoice.objects.filter(pk__in=later):
        item = job.items.get(target_id=str(record.pk))
        if record.status == S.EXTERNAL_CHARGED:
            assert item.outcome == "skipped"


def test_two_jobs_over_the_same_records_push_each_record_once(mirror, operator):
    pks = waiting_pks(30)
    jobs = []
    for status in (S.CANCEL, S.DONE_UNSUCCEED):
        jobs.append(
            subscription_invoice_set_status_bulk(
                records=SubscriptionInvoice.objects.filter(pk__in=pks),
                status=status,
                actor=operator,
                reason="bulk",
            )
        )

    results = together(*[(lambda j=j: bulk.run_job(j.pk)) for j in jobs])

    assert not any(isinstance(r, BaseException) for r in results), results
    writes = writes_per_record(mirror)
    assert len(writes) == len(pks) and set(writes.values()) == {1}
    assert_mirror_equals_paynet(mirror, pks)
    for job in jobs:
        job.refresh_from_db()
    # Every record went to exactly one of the two jobs; the other skipped it as changed.
    assert sum(j.succeeded for j in jobs) == len(pks)
    assert sum(j.skipped for j in jobs) == len(pks)
