"""Batches end to end against the sandbox over real HTTP: requests, results, failures, re-runs."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError

from billqueries.models import BillDebt, BillQueryBatch, BillQueryLine
from billqueries.services import (
    InvalidLines,
    bill_query_batch_create,
    bill_query_batch_preview,
    bill_query_batch_rerun_failed,
    firm_ref_no,
)
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes.jobs import job_cancel, job_retry_failed

from .conftest import iski_numbers, line

pytestmark = pytest.mark.django_db

FOUND, NO_DEBT, FAILED = (
    BillQueryLine.Outcome.FOUND,
    BillQueryLine.Outcome.NO_DEBT,
    BillQueryLine.Outcome.FAILED,
)


def multi_requests(sandbox) -> list[dict]:
    return sandbox.ledger("payofin", "multipleinvoicequery")


def outcomes(batch: BillQueryBatch) -> list[str]:
    return list(batch.lines.order_by("position").values_list("outcome", flat=True))


@pytest.mark.parametrize("n", [1, 15, 16, 31])
def test_n_lines_take_ceil_n_over_15_requests(sandbox, institutions, run_batch, n) -> None:
    batch = run_batch([line(1, s) for s in iski_numbers(n)])
    ledger = multi_requests(sandbox)
    assert len(ledger) == math.ceil(n / 15)
    assert sorted(c for e in ledger for c in [e["count"]]) == sorted(
        [15] * (n // 15) + ([n % 15] if n % 15 else [])
    )
    # Every line was sent exactly once, under its own firmRefNo.
    sent = [ref for e in ledger for ref in e["firmRefNos"]]
    assert sorted(sent) == sorted(batch.lines.values_list("firm_ref_no", flat=True))
    assert len(set(sent)) == n
    assert batch.state == BillQueryBatch.State.FINISHED
    assert batch.line_count == n == batch.found_count + batch.no_debt_count
    assert not batch.lines.exclude(state=BillQueryLine.State.DONE).exists()


def test_results_land_on_their_own_lines_with_no_debt_in_the_middle(
    sandbox, institutions, run_batch
) -> None:
    # The published sample (payofin.md §4): three with debt around one without.
    batch = run_batch(
        [line(1, "01345677000"), line(1, "1345600"), line(1, "0134569000"), line(1, "01345699000")]
    )
    assert outcomes(batch) == [FOUND, NO_DEBT, FOUND, FOUND]
    by_sub = {
        ln.subscriber_no: ln for ln in batch.lines.prefetch_related("debts").order_by("position")
    }
    assert [d.invoice_amount for d in by_sub["01345677000"].debts.all()] == [Decimal("560.00")]
    assert [d.invoice_amount for d in by_sub["0134569000"].debts.all()] == [Decimal("57.00")]
    assert [d.customer_name for d in by_sub["01345699000"].debts.all()] == ["A** BO**********"]
    no_debt = by_sub["1345600"]
    assert (no_debt.result, no_debt.result_code) == (False, -1)
    assert no_debt.result_message == "Abone Numarasına Ait Borç Kaydı Bulunmamaktadır"
    assert no_debt.debts.count() == 0
    assert batch.debt_total == Decimal("619.00") and batch.debt_count == 3
    debt = by_sub["01345677000"].debts.get()
    assert debt.merchant_profit == Decimal("2.00") and debt.total_amount == Decimal("562.00")
    assert debt.soot_code == 1 and debt.invoice_query_id > 0


def test_sandbox_answers_match_its_hash_rule_line_by_line(sandbox, institutions, run_batch) -> None:
    numbers = iski_numbers(40, start=7_000_000_000)
    batch = run_batch([line(1, s) for s in numbers])
    # Ask the sandbox for each number alone, in order: the batch must have the same answers.
    base = f"{sandbox.url}/payofin/invoices/multipleinvoicequery"
    headers = {"ApiKey": settings.PAYOFIN_API_KEY, "SecretKey": settings.PAYOFIN_SECRET_KEY}
    for ln in batch.lines.order_by("position"):
        body = {
            "invoiceQueryList": [
                {"sootCode": "1", "subscriberNo": ln.subscriber_no, "firmRefNo": "X"}
            ]
        }
        entry = requests.post(base, json=body, headers=headers, timeout=10).json()["invoices"][0]
        assert ln.result_code == entry["resultCode"], ln.subscriber_no
        assert ln.debt_count == len(entry["invoiceList"])
        assert sorted(ln.debts.values_list("invoice_no", flat=True)) == sorted(
            b["invoiceNo"] for b in entry["invoiceList"]
        )


def test_querying_the_same_subscriber_again_keeps_both_results(
    sandbox, institutions, run_batch
) -> None:
    first = run_batch([line(1, "01345677000")])
    second = run_batch([line(1, "01345677000")])
    assert first.pk != second.pk
    old, new = (b.lines.get().debts.get() for b in (first, second))
    assert old.invoice_query_id != new.invoice_query_id  # a fresh id per query (§9 assumption 9)
    assert BillDebt.objects.count() == 2
    assert first.lines.get().firm_ref_no != second.lines.get().firm_ref_no


def test_invalid_lines_are_refused_before_anything_is_sent(sandbox, institutions, operator) -> None:
    with pytest.raises(InvalidLines) as caught:
        bill_query_batch_create(
            lines=[line(1, "01345677000"), line(3, "12345"), line(30, "2125550101"), line(99, "1")],
            actor=operator,
            source="api",
        )
    reasons = {i.number: i.reason for i in caught.value.invalid}
    assert set(reasons) == {2, 3, 4}
    assert "9 digits" in reasons[2]
    assert "additional number" in reasons[3]
    assert "No institution has the code 99" in reasons[4]
    assert BillQueryBatch.objects.count() == 0 and multi_requests(sandbox) == []


def test_viewer_cannot_run_a_batch(sandbox, institutions, viewer) -> None:
    with pytest.raises(PermissionDenied):
        bill_query_batch_create(lines=[line(1, "01345677000")], actor=viewer, source="api")
    assert BillQueryBatch.objects.count() == 0


def test_preview_lists_valid_and_invalid_lines(institutions) -> None:
    valid, invalid = bill_query_batch_preview(
        text="İSKİ;01345677000\nizsu 12345\n\nTürk Telekom 2125550101 7\n# a comment\n99;1"
    )
    assert [(v.number, v.soot_code) for v in valid] == [(1, 1), (4, 30)]
    assert [(i.number, i.text) for i in invalid] == [(2, "izsu 12345"), (6, "99;1")]
    with pytest.raises(ValidationError):
        bill_query_batch_preview(text="   ")


# --- failures: every line ends with a result or a reason, and can be re-run -----------------


def _assert_nothing_lost(batch: BillQueryBatch) -> None:
    batch.refresh_from_db()
    assert batch.is_finished
    lines = list(batch.lines.all())
    assert all(ln.state == BillQueryLine.State.DONE for ln in lines)
    assert all(ln.outcome in (FOUND, NO_DEBT, FAILED) for ln in lines)
    assert all(ln.result_message for ln in lines if ln.outcome == FAILED)
    assert batch.found_count + batch.no_debt_count + batch.failed_count == batch.line_count


def test_a_failing_code_for_one_entry_fails_only_that_line(
    sandbox, institutions, run_batch
) -> None:
    sandbox.faults(
        {
            "kind": "reject",
            "service": "payofin",
            "operation": "multipleinvoicequery",
            "match": {"subscriberNo": "0134569000"},
            "message": "-24: Abone başka bankada işlemde",
        }
    )
    batch = run_batch([line(1, "01345677000"), line(1, "0134569000"), line(1, "01345699000")])
    _assert_nothing_lost(batch)
    assert outcomes(batch) == [FOUND, FAILED, FOUND]
    failed = batch.lines.get(position=2)
    assert (failed.result, failed.result_code) == (False, -24)
    assert failed.result_message == "Abone başka bankada işlemde"
    assert batch.state == BillQueryBatch.State.FINISHED and batch.failed_count == 1
    # The request itself succeeded: its job item is ok and says what happened to its lines.
    item = JobItem.objects.get(job=batch.job)
    assert item.outcome == "ok" and item.result["failed"] == 1


def _chunk_failure(sandbox, run_batch, rule: dict, numbers: list[str]) -> BillQueryBatch:
    """30 lines in two requests; the rule hits only the request holding numbers[20]."""
    target = {"service": "payofin", "operation": "multipleinvoicequery"}
    sandbox.faults({**target, **rule, "match": {"subscriberNo": numbers[20]}})
    return run_batch([line(1, s) for s in numbers])


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "status", "status": 503}, "server error (HTTP 503)"),
        ({"kind": "malformed"}, "not JSON"),
        ({"kind": "drop"}, "closed the connection"),
    ],
)
def test_a_failed_request_fails_its_lines_with_the_reason(
    sandbox, institutions, run_batch, rule, message
) -> None:
    numbers = iski_numbers(30)
    batch = _chunk_failure(sandbox, run_batch, rule, numbers)
    _assert_nothing_lost(batch)
    lines = list(batch.lines.order_by("position"))
    assert all(ln.outcome != FAILED for ln in lines[:15])
    assert all(ln.outcome == FAILED and message in ln.result_message for ln in lines[15:])
    assert all(ln.result_code is None and ln.debts.count() == 0 for ln in lines[15:])
    assert batch.state == BillQueryBatch.State.FINISHED and batch.failed_count == 15
    job = Job.objects.get(pk=batch.job_id)
    assert job.state == Job.State.PARTIALLY_FAILED
    assert UpstreamCall.objects.filter(job=job, outcome__in=["failed", "rejected"]).exists()


def test_a_whole_request_refusal_fails_its_lines_with_the_code(
    sandbox, institutions, run_batch
) -> None:
    # "reject" without `match` is Payofin's top-level failure envelope for the whole request.
    sandbox.faults({"kind": "reject", "service": "payofin", "message": "-18", "times": 1})
    batch = run_batch([line(1, s) for s in iski_numbers(30)])
    _assert_nothing_lost(batch)
    failed = batch.lines.filter(outcome=FAILED)
    assert failed.count() == 15 and batch.failed_count == 15
    assert {ln.result_message for ln in failed} == {
        "Payofin refused the request: Sistem hatası oluştu (code -18)."
    }
    assert len(multi_requests(sandbox)) == 1  # the refused request queried nothing


def test_a_timeout_fails_its_lines_and_they_can_be_re_run(
    sandbox, institutions, run_batch, operator, settings, django_capture_on_commit_callbacks
) -> None:
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    numbers = iski_numbers(30)
    batch = _chunk_failure(sandbox, run_batch, {"kind": "timeout", "seconds": 1}, numbers)
    _assert_nothing_lost(batch)
    assert outcomes(batch)[15:] == [FAILED] * 15
    assert "did not answer in time" in batch.lines.get(position=30).result_message
    before = dict(batch.lines.values_list("position", "firm_ref_no"))

    sandbox.faults()
    with django_capture_on_commit_callbacks(execute=True):
        bill_query_batch_rerun_failed(batch, operator)
    _assert_nothing_lost(batch)
    assert batch.failed_count == 0 and batch.state == BillQueryBatch.State.FINISHED
    # Only the failed lines went again, each under a new firmRefNo.
    rerun = multi_requests(sandbox)[-1]
    assert rerun["count"] == 15 and set(rerun["subscriberNos"]) == set(numbers[15:])
    after = dict(batch.lines.values_list("position", "firm_ref_no"))
    assert all(after[p] == before[p] for p in range(1, 16))
    assert all(after[p] != before[p] for p in range(16, 31))
    assert batch.lines.get(position=16).attempt == 2


def test_credentials_refused_fails_the_whole_batch(
    sandbox, institutions, run_batch, settings
) -> None:
    settings.PAYOFIN_SECRET_KEY = "wrong"
    batch = run_batch([line(1, s) for s in iski_numbers(20)])
    _assert_nothing_lost(batch)
    assert batch.state == BillQueryBatch.State.FAILED and batch.failed_count == 20
    assert "refused our credentials" in batch.lines.first().result_message
    assert multi_requests(sandbox) == []  # refused before anything was queried
    calls = UpstreamCall.objects.filter(operation="multipleinvoicequery")
    assert calls.count() == 2 and set(calls.values_list("upstream_code", flat=True)) == {"-22"}


def test_rerun_needs_a_person_with_the_permission_and_failed_lines(
    sandbox, institutions, run_batch, viewer, operator
) -> None:
    batch = run_batch([line(1, "01345677000")])
    for actor in (viewer, None):  # re-running is a person's action, never the system's
        with pytest.raises(PermissionDenied):
            bill_query_batch_rerun_failed(batch, actor)
    with pytest.raises(ValidationError, match="no failed lines"):
        bill_query_batch_rerun_failed(batch, operator)


def test_firm_ref_no_is_unique_and_at_most_15_characters() -> None:
    refs = {
        firm_ref_no(b, p, a) for b in (1, 35, 36, 10**9) for p in (1, 36, 9999) for a in (1, 2, 40)
    }
    assert len(refs) == 36 and all(len(r) <= 15 for r in refs)
    assert firm_ref_no(12, 3, 1) == "QC00301"
    assert len(firm_ref_no(36**9 - 1, 46655, 1295)) == 15
    with pytest.raises(ValueError):
        firm_ref_no(36**9, 1, 1)


def test_retrying_the_jobs_failed_items_answers_their_lines(
    sandbox, institutions, run_batch, operator, django_capture_on_commit_callbacks
) -> None:
    numbers = iski_numbers(30)
    batch = _chunk_failure(sandbox, run_batch, {"kind": "status", "status": 500}, numbers)
    assert batch.failed_count == 15
    sandbox.faults()
    with django_capture_on_commit_callbacks(execute=True):
        job_retry_failed(job=batch.job, actor=operator)  # the generic job page's button
    _assert_nothing_lost(batch)
    assert batch.failed_count == 0 and batch.state == BillQueryBatch.State.FINISHED


def test_cancelling_a_queued_job_fails_its_lines_with_the_reason(
    sandbox, institutions, operator
) -> None:
    # Not run: outside captured on_commit callbacks the job is never started.
    batch = bill_query_batch_create(
        lines=[line(1, s) for s in iski_numbers(20)], actor=operator, source="api"
    )
    job_cancel(job=batch.job, actor=operator)
    _assert_nothing_lost(batch)
    assert batch.state == BillQueryBatch.State.FAILED and batch.failed_count == 20
    assert set(batch.lines.values_list("result_message", flat=True)) == {
        "Cancelled before it was sent."
    }
    assert multi_requests(sandbox) == []
