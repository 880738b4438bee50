"""Paynet services against the sandbox over real HTTP: what is sent, recorded and mirrored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.pushes import (
    INVOICE_STATUS,
    StatusRequest,
)
from subscriptions.services import (
    subscription_invoice_create,
    subscription_invoice_create_preview,
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
    subscription_invoice_status_preview,
    subscription_refresh_start,
    subscription_set_status_all,
    subscription_status_all_preview,
)
from tests.subscriptions.helpers import a_record, a_subscription, upstream_record, upstream_records
from upstream.calls.errors import (
    PushInDoubt,
    UpstreamRejectedError,
)
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes import bulk
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_retry_failed
from upstream.pushes.verdicts import VerdictKind

S = InvoiceStatus


def calls(operation: str | None = None):
    qs = UpstreamCall.objects.order_by("id")
    return qs.filter(operation=operation) if operation else qs


def writes(sandbox, operation: str = "invoice_status_update") -> list[dict]:
    return sandbox.ledger("paynet", operation)


def settle(job: Job, monkeypatch) -> Job:
    """What the worker does with an in-doubt single push: read back, then apply or resend."""
    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))
    bulk.run_job(job.pk)
    job.refresh_from_db()
    return job


# --- one record ----------------------------------------------------------------------------


def test_set_status_pushes_once_and_updates_the_mirror(mirror, operator):
    record = a_record(S.WAITING)

    returned = subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="test"
    )

    record.refresh_from_db()
    assert record.status == S.CANCEL == returned.status
    assert record.synced_at is not None
    (write,) = writes(mirror)
    assert (write["invoice_no"], write["status_from"], write["status_to"]) == (
        record.invoice_no,
        S.WAITING,
        S.CANCEL,
    )
    assert upstream_record(mirror, record)["status"] == S.CANCEL
    (call,) = calls()
    assert call.operation == "invoice_status_update"
    assert (call.outcome, call.upstream_code, call.status_code) == ("ok", "0", 200)
    assert call.request_headers["Authorization"] == "***"
    assert "sck_" not in str(call.request_headers)
    assert call.request == {
        "invoice_id": record.invoice_id,
        "invoice_no": record.invoice_no,
        "status": S.CANCEL,
    }
    assert call.actor == operator
    assert (call.target_type, call.target_id) == (
        "subscriptions.subscriptioninvoice",
        str(record.pk),
    )


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.DONE_SUCCEED, S.CANCEL),
        (S.DELETED, S.WAITING),
        (S.WAITING, S.DONE_SUCCEED),
        (S.WAITING, 1),
    ],
)
def test_blocked_transition_raises_and_sends_nothing(mirror, operator, current, target):
    record = a_record(current)

    with pytest.raises(ValidationError):
        subscription_invoice_set_status(record=record, status=target, actor=operator)

    assert not UpstreamCall.objects.exists()
    assert writes(mirror) == []
    record.refresh_from_db()
    assert record.status == current


def test_paynet_refusal_reads_the_record_back_and_the_mirror_follows_paynet(mirror, operator):
    record = a_record(S.WAITING)
    # Paynet charged it meanwhile; our mirror still says waiting.
    mirror.command("paynet", command="set_status", invoice_no=record.invoice_no, status=3)

    with pytest.raises(UpstreamRejectedError) as info:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert info.value.upstream_code == "1"
    assert "değiştirilemez" in str(info.value)
    assert "Paynet holds payment record" in str(info.value)
    record.refresh_from_db()
    assert record.status == S.DONE_SUCCEED  # read back at once, never our own target
    assert writes(mirror) == []
    call, read_back = calls()
    assert (read_back.operation, read_back.outcome) == ("invoice_list", "ok")
    assert (call.outcome, call.upstream_code) == ("rejected", "1")
    assert call.upstream_message and call.upstream_message in str(info.value)
    assert info.value.call_id == call.pk


def test_server_error_after_retries_is_in_doubt_and_leaves_the_mirror_unchanged(
    mirror, operator, settings
):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_status_update"})

    with pytest.raises(PushInDoubt) as info:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert "server error (HTTP 503)" in str(info.value)
    record.refresh_from_db()
    assert record.status == S.WAITING
    assert upstream_record(mirror, record)["status"] == S.WAITING
    pushes = calls("invoice_status_update")
    assert pushes.count() == settings.UPSTREAM_MAX_ATTEMPTS
    assert list(pushes.values_list("attempt", flat=True)) == [1, 2, 3]
    assert all(c.outcome != "ok" and c.status_code == 503 for c in pushes)
    assert all(c.upstream_code == "8" for c in pushes)


def test_timeout_is_in_doubt_then_read_back_and_sent_once_when_not_applied(
    mirror, operator, settings, monkeypatch
):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    record = a_record(S.WAITING)
    mirror.faults(
        {"kind": "timeout", "seconds": 1, "operation": "invoice_status_update", "times": 1}
    )

    with pytest.raises(PushInDoubt) as info:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    record.refresh_from_db()
    assert record.status == S.WAITING  # nothing applied on a missing answer
    (push,) = calls("invoice_status_update")
    assert push.outcome == "in_doubt"
    job = info.value.job
    assert job.inline and job.reason == "test" and job.created_by == operator

    job = settle(job, monkeypatch)

    assert job.state == Job.State.SUCCEEDED
    record.refresh_from_db()
    assert record.status == S.CANCEL
    # Read back first (not applied), then sent once more: one write reached Paynet.
    assert len(writes(mirror)) == 1
    assert calls("invoice_list").filter(outcome="ok").exists()
    assert list(calls("invoice_status_update").values_list("outcome", flat=True)) == [
        "in_doubt",
        "ok",
    ]


def test_applied_but_unanswered_is_settled_by_reading_back_never_resent(
    mirror, operator, monkeypatch
):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1})

    # Read back in the request: it landed, so it is settled at once and not sent again.
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="test")
    job = Job.objects.get(kind="paynet.invoice_status")

    assert job.state == Job.State.SUCCEEDED and job.inline
    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert len(writes(mirror)) == 1
    (push,) = calls("invoice_status_update")
    assert push.outcome == "in_doubt"
    assert calls("invoice_list").exists()
    assert "reading back" in job.items.get().message


def test_malformed_answer_is_in_doubt_and_leaves_the_mirror_unchanged(mirror, operator):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "malformed", "operation": "invoice_status_update"})

    with pytest.raises(PushInDoubt) as info:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert "not JSON" in str(info.value)
    record.refresh_from_db()
    assert record.status == S.WAITING
    assert calls("invoice_status_update").count() == 1
    assert not calls().filter(outcome="ok", operation="invoice_status_update").exists()


# --- create a payment record ---------------------------------------------------------------

VAL_DATE = datetime(2030, 1, 15, 7, 0, tzinfo=UTC)


def test_create_mirrors_the_record_paynet_lists_with_its_invoice_id(mirror, operator):
    subscription = a_subscription(fixed=False)
    before = subscription.invoices.count()

    record = subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=Decimal("288.98"),
        agent_amount=Decimal("29.26"),
        company_amount=Decimal("259.72"),
        actor=operator,
        reason="test",
    )

    assert subscription.invoices.count() == before + 1
    (write,) = writes(mirror, "create_invoice")
    assert write["request"]["amount"] == 28898
    assert write["request"]["val_date"] == "15.01.2030 10:00:00"
    assert record.invoice_no == write["invoice_no"]
    assert record.invoice_id == str(write["invoice_id"])  # Paynet's id, learned by reading back
    upstream = upstream_record(mirror, record)
    assert upstream["invoice_no"] == record.invoice_no
    assert (record.amount, record.agent_amount, record.company_amount) == (
        Decimal("288.98"),
        Decimal("29.26"),
        Decimal("259.72"),
    )
    assert record.status == S.WAITING
    assert record.val_date == VAL_DATE
    assert list(calls().values_list("operation", "outcome")) == [
        ("create_invoice", "ok"),
        ("invoice_list", "ok"),
    ]


def test_create_with_a_given_invoice_no_keeps_it(mirror, operator):
    subscription = a_subscription(fixed=False)

    record = subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=Decimal("100"),
        invoice_no="77001122",
        actor=operator,
        reason="test",
    )

    assert record.invoice_no == "77001122"
    assert record.company_amount == Decimal("100.00") and record.agent_amount == 0


def test_create_on_a_fixed_price_subscription_is_refused_before_sending(mirror, operator):
    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=a_subscription(fixed=True),
            val_date=VAL_DATE,
            amount=Decimal("10"),
            actor=operator,
            reason="test",
        )

    assert "variable-price" in " ".join(info.value.messages)
    assert not UpstreamCall.objects.exists()


@pytest.mark.parametrize(
    ("amounts", "field"),
    [
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("-5")}, "amount"),
        ({"amount": Decimal("1.005")}, "amount"),
        ({"amount": Decimal("10"), "agent_amount": Decimal("-1")}, "agent_amount"),
        ({"amount": Decimal("10"), "company_amount": Decimal("0.001")}, "company_amount"),
        (
            {
                "amount": Decimal("100"),
                "agent_amount": Decimal("30"),
                "company_amount": Decimal("60"),
            },
            "__all__",
        ),
        ({"amount": Decimal("10"), "agent_amount": Decimal("11")}, "__all__"),
    ],
)
def test_create_amount_rules_are_checked_before_sending(mirror, operator, amounts, field):
    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=a_subscription(fixed=False),
            val_date=VAL_DATE,
            actor=operator,
            reason="test",
            **amounts,
        )

    assert field in info.value.message_dict
    assert not UpstreamCall.objects.exists()
    assert writes(mirror, "create_invoice") == []


def test_create_with_a_number_the_subscription_already_has_is_refused_locally(mirror, operator):
    subscription = a_subscription(fixed=False)
    existing = subscription.invoices.first()

    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=Decimal("10"),
            invoice_no=existing.invoice_no,
            actor=operator,
            reason="test",
        )

    assert "invoice_no" in info.value.message_dict
    assert not UpstreamCall.objects.exists()


def test_create_with_a_number_only_paynet_knows_is_caught_by_code_5(mirror, operator):
    subscription = a_subscription(fixed=False)
    existing = subscription.invoices.first()
    number = existing.invoice_no
    existing.delete()  # the mirror no longer knows it; Paynet still does
    count = SubscriptionInvoice.objects.count()

    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=Decimal("10"),
            invoice_no=number,
            actor=operator,
            reason="test",
        )

    assert info.value.message_dict["invoice_no"] == [
        f"Paynet already has a payment record {number}."
    ]
    assert SubscriptionInvoice.objects.count() == count
    (call,) = calls("create_invoice")
    assert (call.outcome, call.upstream_code) == ("rejected", "5")


def test_create_refused_by_paynet_saves_nothing(mirror, operator):
    subscription = a_subscription(fixed=False)
    count = SubscriptionInvoice.objects.count()
    mirror.faults({"kind": "reject", "operation": "create_invoice", "message": "Bayi bloke"})

    with pytest.raises(UpstreamRejectedError) as info:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=Decimal("10"),
            actor=operator,
            reason="test",
        )

    assert str(info.value) == "Paynet refused: Bayi bloke (code 1)."
    assert SubscriptionInvoice.objects.count() == count
    assert writes(mirror, "create_invoice") == []
    assert list(calls().values_list("operation", "outcome")) == [("create_invoice", "rejected")]


def test_create_applied_without_an_answer_is_found_by_reading_back(mirror, operator, monkeypatch):
    subscription = a_subscription(fixed=False)
    mirror.faults({"kind": "drop", "apply": True, "operation": "create_invoice", "times": 1})

    record = subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=Decimal("42.50"),
        actor=operator,
        reason="test",
    )

    (write,) = writes(mirror, "create_invoice")
    assert record.invoice_id == str(write["invoice_id"])
    assert record.amount == Decimal("42.50")
    assert calls("create_invoice").get().outcome == "in_doubt"


def test_create_lost_before_paynet_applied_it_is_sent_again_with_the_same_number(
    mirror, operator, monkeypatch
):
    subscription = a_subscription(fixed=False)
    count = SubscriptionInvoice.objects.count()
    mirror.faults({"kind": "drop", "operation": "create_invoice", "times": 1})

    with pytest.raises(PushInDoubt) as info:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=Decimal("10"),
            actor=operator,
            reason="test",
        )
    assert SubscriptionInvoice.objects.count() == count
    job = settle(info.value.job, monkeypatch)

    assert job.state == Job.State.SUCCEEDED
    assert len(writes(mirror, "create_invoice")) == 1  # created once
    sent = calls("create_invoice")
    assert list(sent.values_list("outcome", flat=True)) == ["in_doubt", "ok"]
    assert len({c.request["invoice_no"] for c in sent}) == 1  # the same number both times
    assert SubscriptionInvoice.objects.count() == count + 1


def test_create_with_a_charge_date_in_the_past_is_refused_before_sending(mirror, operator):
    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=a_subscription(fixed=False),
            val_date=timezone.now() - timedelta(minutes=5),
            amount=Decimal("10"),
            actor=operator,
            reason="test",
        )

    assert "in the past" in info.value.message_dict["val_date"][0]
    assert not UpstreamCall.objects.exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_create_without_a_reason_is_refused_before_sending(mirror, operator, reason):
    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=a_subscription(fixed=False),
            val_date=VAL_DATE,
            amount=Decimal("10"),
            actor=operator,
            reason=reason,
        )

    assert list(info.value.message_dict) == ["reason"]
    assert not UpstreamCall.objects.exists()


@pytest.mark.parametrize("currency", ["USD", "EUR", ""])
def test_create_in_another_currency_is_refused_before_sending(mirror, operator, currency):
    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=a_subscription(fixed=False),
            val_date=VAL_DATE,
            amount=Decimal("10"),
            currency=currency,
            actor=operator,
            reason="test",
        )

    assert "currency" in info.value.message_dict
    assert not UpstreamCall.objects.exists()


def _same_day_record(subscription: Subscription) -> SubscriptionInvoice:
    """A mirrored record moved to VAL_DATE's day (another hour), so a create can repeat it."""
    record = subscription.invoices.order_by("pk").first()
    record.val_date = VAL_DATE - timedelta(hours=3)
    record.save(update_fields=["val_date"])
    return record


def test_create_repeating_a_record_of_the_same_day_and_amount_needs_allow_duplicate(
    mirror, operator
):
    subscription = a_subscription(fixed=False)
    existing = _same_day_record(subscription)
    count = subscription.invoices.count()

    with pytest.raises(ValidationError) as info:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=existing.amount,
            actor=operator,
            reason="test",
        )

    (message,) = info.value.message_dict["allow_duplicate"]
    assert existing.invoice_no in message and "same charge date and amount" in message
    assert not UpstreamCall.objects.exists()
    assert writes(mirror, "create_invoice") == []

    record = subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=existing.amount,
        actor=operator,
        reason="test",
        allow_duplicate=True,
    )

    assert record.amount == existing.amount and record.pk != existing.pk
    assert subscription.invoices.count() == count + 1
    assert len(writes(mirror, "create_invoice")) == 1


def test_create_of_another_amount_on_the_same_day_is_no_duplicate(mirror, operator):
    subscription = a_subscription(fixed=False)
    existing = _same_day_record(subscription)

    record = subscription_invoice_create(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=existing.amount + Decimal("0.01"),
        actor=operator,
        reason="test",
    )

    assert record.amount == existing.amount + Decimal("0.01")


def test_create_preview_splits_the_amount_and_sends_nothing(mirror):
    subscription = a_subscription(fixed=False)
    existing = _same_day_record(subscription)

    preview = subscription_invoice_create_preview(
        subscription=subscription,
        val_date=VAL_DATE,
        amount=existing.amount,
        agent_amount=Decimal("1.50"),
    )

    assert (preview.agent_amount, preview.company_amount) == (
        Decimal("1.50"),
        existing.amount - Decimal("1.50"),
    )
    assert preview.errors == {}
    assert all(check.passed for check in preview.verdict.checks)
    assert preview.verdict.duplicates == (existing,)
    assert not UpstreamCall.objects.exists() and mirror.ledger("paynet") == []


# --- bulk ----------------------------------------------------------------------------------


def fifty_records():
    ids = SubscriptionInvoice.objects.order_by("pk").values_list("pk", flat=True)[:50]
    return SubscriptionInvoice.objects.filter(pk__in=list(ids))


def run_bulk(records, actor, django_capture_on_commit_callbacks, status=S.CANCEL) -> Job:
    with django_capture_on_commit_callbacks(execute=True):
        job = subscription_invoice_set_status_bulk(
            records=records, status=status, actor=actor, reason="month-end clean-up"
        )
    job.refresh_from_db()
    return job


def test_bulk_queues_only_records_that_will_change_and_pushes_each_once(
    mirror, operator, django_capture_on_commit_callbacks
):
    records = fifty_records()
    before = dict(records.values_list("pk", "status"))
    changing = {
        pk
        for pk, st in before.items()
        if INVOICE_STATUS.judge(st, S.CANCEL).kind == VerdictKind.CHANGE
    }
    assert 0 < len(changing) < len(before), "the sample should mix verdicts"

    job = run_bulk(records, operator, django_capture_on_commit_callbacks)

    assert job.state == Job.State.SUCCEEDED
    assert job.total == job.succeeded == len(changing)
    assert job.reason == "month-end clean-up"
    assert {int(i.target_id) for i in job.items.all()} == changing
    assert set(job.items.values_list("outcome", flat=True)) == {JobItem.Outcome.OK}
    after = dict(records.values_list("pk", "status"))
    for pk, status in before.items():
        assert after[pk] == (S.CANCEL if pk in changing else status)
    written = [w["invoice_id"] for w in writes(mirror)]
    assert len(written) == len(set(written)) == len(changing)
    upstream = upstream_records(mirror)
    assert all(upstream[r.invoice_id]["status"] == r.status for r in records)
    item = job.items.first()
    assert item.result == {"from": before[int(item.target_id)], "to": S.CANCEL}


def test_bulk_item_refused_by_paynet_fails_alone_and_succeeds_on_retry(
    mirror, operator, django_capture_on_commit_callbacks
):
    records = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:10]
    records = SubscriptionInvoice.objects.filter(pk__in=[r.pk for r in records])
    target = records.order_by("pk").first()
    mirror.faults(
        {"kind": "reject", "match": {"invoice_no": target.invoice_no}, "message": "Kayıt kilitli"}
    )

    job = run_bulk(records, operator, django_capture_on_commit_callbacks)

    assert (job.state, job.succeeded, job.failed) == (Job.State.PARTIALLY_FAILED, 9, 1)
    failed = job.items.get(outcome=JobItem.Outcome.REJECTED)
    assert failed.target_id == str(target.pk)
    assert "Kayıt kilitli" in failed.message and failed.upstream_code == "1"
    assert failed.call.outcome == "rejected"
    target.refresh_from_db()
    assert target.status == S.WAITING
    assert set(records.exclude(pk=target.pk).values_list("status", flat=True)) == {S.CANCEL}

    mirror.faults()
    with django_capture_on_commit_callbacks(execute=True):
        job_retry_failed(job=job, actor=operator)

    job.refresh_from_db()
    assert (job.state, job.succeeded, job.failed) == (Job.State.SUCCEEDED, 10, 0)
    target.refresh_from_db()
    assert target.status == S.CANCEL
    assert len(writes(mirror)) == 10


def test_bulk_without_a_reason_is_refused(mirror, operator):
    with pytest.raises(ValidationError):
        subscription_invoice_set_status_bulk(
            records=fifty_records(), status=S.CANCEL, actor=operator, reason="  "
        )
    assert not Job.objects.exists()


def test_bulk_where_nothing_would_change_creates_no_job(mirror, operator):
    charged = SubscriptionInvoice.objects.filter(status=S.DONE_SUCCEED)

    with pytest.raises(ValidationError):
        subscription_invoice_set_status_bulk(
            records=charged, status=S.CANCEL, actor=operator, reason="x"
        )
    assert not Job.objects.exists()


def test_preview_counts_each_verdict_and_totals_what_will_change(mirror):
    records = fifty_records()

    preview = subscription_invoice_status_preview(records=records, status=S.CANCEL)

    expected: dict[str, int] = {}
    total = Decimal("0")
    for record in records:
        kind = INVOICE_STATUS.verdict(record, StatusRequest(S.CANCEL)).kind
        expected[kind] = expected.get(kind, 0) + 1
        if kind == VerdictKind.CHANGE:
            total += record.amount
    assert preview.counts == expected
    assert preview.change_total == total
    assert sum(preview.blocked_reasons.values()) == expected.get(VerdictKind.BLOCKED, 0)
    assert len(preview.sample) == 50


# --- status of all records of a subscription -------------------------------------------------


def test_status_all_preview_judges_every_record_of_the_subscriptions(mirror):
    subs = Subscription.objects.order_by("pk")[:3]
    records = SubscriptionInvoice.objects.filter(subscription__in=subs)

    preview = subscription_status_all_preview(subscriptions=subs, status=S.DONE_UNSUCCEED)

    expected: dict[str, int] = {kind.value: 0 for kind in VerdictKind}
    total = Decimal("0")
    for record in records:
        kind = INVOICE_STATUS.verdict(record, StatusRequest(S.DONE_UNSUCCEED)).kind
        expected[kind] = expected.get(kind, 0) + 1
        total += record.amount if kind == VerdictKind.CHANGE else 0
    assert preview.counts == expected and preview.total == records.count()
    assert preview.change_total == total
    assert {r.pk for r, _ in preview.sample} == set(records.values_list("pk", flat=True))
    assert mirror.ledger("paynet") == [] and not UpstreamCall.objects.exists()


def test_set_status_all_reconciles_each_subscription_from_invoice_list(
    mirror, operator, django_capture_on_commit_callbacks
):
    subs = Subscription.objects.order_by("pk")[:3]
    subs = Subscription.objects.filter(pk__in=[s.pk for s in subs])
    before = {s.pk: dict(s.invoices.values_list("invoice_no", "status")) for s in subs}

    with django_capture_on_commit_callbacks(execute=True):
        job = subscription_set_status_all(
            subscriptions=subs, status=S.DONE_UNSUCCEED, actor=operator, reason="closing"
        )

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.total == 3
    assert len(writes(mirror, "invoices_status_update_all")) == 3
    upstream = upstream_records(mirror)
    for item in job.items.all():
        sub = subs.get(pk=item.target_id)
        old = before[sub.pk]
        expected_changes = sorted(
            (no, st)
            for no, st in old.items()
            if INVOICE_STATUS.judge(st, S.DONE_UNSUCCEED).kind == VerdictKind.CHANGE
        )
        changed = sorted((c["invoice_no"], c["from"]) for c in item.result["changed"])
        assert changed == expected_changes
        assert all(c["to"] == S.DONE_UNSUCCEED for c in item.result["changed"])
        assert item.result["unchanged"] == len(old) - len(expected_changes)
    # The mirror equals Paynet afterwards, record by record.
    mirrored = dict(SubscriptionInvoice.objects.values_list("invoice_id", "status"))
    assert mirrored == {invoice_id: r["status"] for invoice_id, r in upstream.items()}


def test_set_status_all_picks_up_a_change_made_at_paynet_in_between(
    mirror, operator, django_capture_on_commit_callbacks
):
    record = a_record(S.WAITING)
    # Paynet charged one record since our last sync: the read back corrects the mirror.
    mirror.command("paynet", command="set_status", invoice_no=record.invoice_no, status=3)

    with django_capture_on_commit_callbacks(execute=True):
        subscription_set_status_all(
            subscriptions=Subscription.objects.filter(pk=record.subscription_id),
            status=S.CANCEL,
            actor=operator,
            reason="x",
        )

    record.refresh_from_db()
    assert record.status == S.DONE_SUCCEED


# --- permissions ---------------------------------------------------------------------------


def test_a_viewer_cannot_run_any_push(mirror, viewer):
    record = a_record(S.WAITING)
    subs = Subscription.objects.filter(pk=record.subscription_id)
    attempts = [
        lambda: subscription_invoice_set_status(record=record, status=S.CANCEL, actor=viewer),
        lambda: subscription_invoice_set_status_bulk(
            records=SubscriptionInvoice.objects.filter(pk=record.pk),
            status=S.CANCEL,
            actor=viewer,
            reason="x",
        ),
        lambda: subscription_set_status_all(
            subscriptions=subs, status=S.CANCEL, actor=viewer, reason="x"
        ),
        lambda: subscription_invoice_create(
            subscription=a_subscription(fixed=False),
            val_date=VAL_DATE,
            amount=Decimal("10"),
            actor=viewer,
            reason="test",
        ),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied):
            attempt()
    assert not UpstreamCall.objects.exists()
    assert not Job.objects.exists()
    assert mirror.ledger("paynet") == []


def test_a_viewer_cannot_retry_a_job(mirror, operator, viewer, django_capture_on_commit_callbacks):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "reject", "operation": "invoice_status_update"})
    job = run_bulk(
        SubscriptionInvoice.objects.filter(pk=record.pk),
        operator,
        django_capture_on_commit_callbacks,
    )
    assert job.state == Job.State.FAILED

    with pytest.raises(PermissionDenied):
        job_retry_failed(job=job, actor=viewer)


def test_set_status_to_the_current_status_sends_nothing(mirror, operator):
    record = a_record(S.CANCEL)

    result = subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="test"
    )

    assert result.status == S.CANCEL
    assert writes(mirror) == []
    assert not calls().exists()


def test_set_status_judges_the_current_row_not_a_stale_copy(mirror, operator):
    record = a_record(S.WAITING)
    SubscriptionInvoice.objects.filter(pk=record.pk).update(status=S.DONE_SUCCEED)

    with pytest.raises(ValidationError):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    assert writes(mirror) == []


def test_create_confirmed_but_not_read_back_is_in_doubt_and_settled_later(
    mirror, operator, monkeypatch, settings
):
    # Six failed reads in a row would open Paynet's breaker (tests/upstream/test_breaker.py);
    # this test is about settling a create, not about the breaker.
    settings.BREAKER_FAILURES = 10
    subscription = a_subscription(fixed=False)
    before = subscription.invoices.count()
    # The read after the create and the read-back in the request both fail (3 attempts each).
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_list", "times": 6})

    with pytest.raises(PushInDoubt):
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=Decimal("10.00"),
            actor=operator,
            reason="test",
        )
    assert len(writes(mirror, "create_invoice")) == 1
    assert subscription.invoices.count() == before

    job = settle(Job.objects.get(kind="paynet.create_invoice"), monkeypatch)

    assert job.state == Job.State.SUCCEEDED
    assert len(writes(mirror, "create_invoice")) == 1  # read back, not sent again
    assert subscription.invoices.count() == before + 1


# --- refresh -------------------------------------------------------------------------------

# What the refresh used to stop at, silently.
OLD_REFRESH_CAP = 10_000


def test_a_refresh_of_more_than_ten_thousand_launches_every_subscription_cheaply(
    db, operator, queued_tasks, django_capture_on_commit_callbacks
):
    Subscription.objects.bulk_create(
        Subscription(subscription_id=f"many-{n}", reference_no=f"M{n}", name_surname="Ada Yılmaz")
        for n in range(OLD_REFRESH_CAP + 50)
    )
    # Both over the approval threshold's count, which a refresh is never held by.
    some = Subscription.objects.filter(pk__in=Subscription.objects.order_by("pk")[:150])
    everything = Subscription.objects.all()
    operator.has_perm("subscriptions.sync_subscription")  # the permission cache, read once
    statements = []
    with django_capture_on_commit_callbacks(execute=True):
        for selected in (some, everything):
            with CaptureQueriesContext(connection) as queries:
                job = subscription_refresh_start(subscriptions=selected, actor=operator)
            statements.append(len(queries))

    # The same statements for 150 as for 10,050, and no item written in the request.
    assert statements[0] == statements[1]
    assert job.total == everything.count() > OLD_REFRESH_CAP
    assert not job.items.exists()
    # A read, never held for a second person's approval, whatever its size.
    assert job.state == Job.State.QUEUED and job.approval_expires_at is None
    assert [t.args[0] for t in queued_tasks if t.task.name == "job_run"][-1] == job.pk

    written = prepare_job(job.pk)

    assert written == job.items.count() == everything.count()
    assert set(job.items.values_list("target_id", flat=True)) == {
        str(pk) for pk in everything.values_list("pk", flat=True)
    }
    # Job pages are read by every viewer: the names are masked on the items too.
    assert not job.items.filter(target_repr__contains="Yılmaz").exists()


def test_a_refresh_bigger_than_a_chunk_re_reads_every_subscription_from_paynet(
    mirror, operator, monkeypatch, django_capture_on_commit_callbacks
):
    # Items are written a few subscriptions at a time, as a big refresh's are 2,000 at a time.
    monkeypatch.setattr(bulk, "EXPAND_CHUNK", 7)
    pks = list(Subscription.objects.order_by("pk").values_list("pk", flat=True))
    record = a_record(S.WAITING, subscription__pk__in=pks[7 * 2 :])  # in the third chunk or later
    mirror.command("paynet", command="set_status", invoice_no=record.invoice_no, status=S.CANCEL)
    count = len(pks)

    with django_capture_on_commit_callbacks(execute=True):
        job = subscription_refresh_start(subscriptions=Subscription.objects.all(), actor=operator)

    job.refresh_from_db()
    assert (job.state, job.total, job.succeeded) == (Job.State.SUCCEEDED, count, count)
    assert sorted(int(t) for t in job.items.values_list("target_id", flat=True)) == pks
    assert calls("subscription_detail").filter(outcome="ok").count() == count
    record.refresh_from_db()
    assert record.status == S.CANCEL  # a later chunk's subscription was read too
