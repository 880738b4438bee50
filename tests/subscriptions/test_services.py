"""Paynet services against the sandbox over real HTTP: what is sent, recorded and mirrored."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.rules import VerdictKind, status_verdict
from subscriptions.services import (
    subscription_invoice_create,
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
    subscription_invoice_status_preview,
    subscription_set_status_all,
)
from tests.subscriptions.helpers import a_record, a_subscription, upstream_record, upstream_records
from upstream.errors import (
    UpstreamRejectedError,
    UpstreamResponseError,
    UpstreamTransportError,
)
from upstream.models import Job, JobItem, UpstreamCall
from upstream.services import job_retry_failed

S = InvoiceStatus


def calls(operation: str | None = None):
    qs = UpstreamCall.objects.order_by("id")
    return qs.filter(operation=operation) if operation else qs


def writes(sandbox, operation: str = "invoice_status_update") -> list[dict]:
    return sandbox.ledger("paynet", operation)


# --- transition rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "kind"),
    [
        (S.WAITING, S.CANCEL, VerdictKind.CHANGE),
        (S.WAITING, S.EXTERNAL_CHARGED, VerdictKind.CHANGE),
        (S.DONE_UNSUCCEED, S.WAITING, VerdictKind.CHANGE),
        (S.CANCEL, S.DELETED, VerdictKind.CHANGE),
        (S.EXTERNAL_CHARGED, S.DONE_UNSUCCEED, VerdictKind.CHANGE),
        (S.CANCEL, S.CANCEL, VerdictKind.SAME),
        (S.DELETED, S.DELETED, VerdictKind.SAME),
        (S.DONE_SUCCEED, S.CANCEL, VerdictKind.BLOCKED),
        (S.DELETED, S.WAITING, VerdictKind.BLOCKED),
        (S.WAITING, S.DONE_SUCCEED, VerdictKind.BLOCKED),
        (S.DONE_SUCCEED, S.DONE_SUCCEED, VerdictKind.BLOCKED),
        (S.WAITING, 1, VerdictKind.BLOCKED),
        (S.WAITING, 7, VerdictKind.BLOCKED),
    ],
)
def test_status_verdict_rule_by_rule(current, target, kind):
    assert status_verdict(current, target).kind == kind


def test_blocked_verdicts_say_why():
    assert "not a Paynet status" in status_verdict(0, 1).reason
    assert "Only Paynet's own charge" in status_verdict(0, 3).reason
    assert "Charged" in status_verdict(3, 5).reason
    assert "Deleted" in status_verdict(6, 0).reason
    assert status_verdict(5, 5).reason == "Already in this status."
    assert status_verdict(0, 5).reason == ""


# --- one record ----------------------------------------------------------------------------


def test_set_status_pushes_once_and_updates_the_mirror(mirror, operator):
    record = a_record(S.WAITING)

    returned = subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

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


def test_paynet_refusal_leaves_the_mirror_unchanged(mirror, operator):
    record = a_record(S.WAITING)
    # Paynet charged it meanwhile; our mirror still says waiting.
    mirror.command("paynet", command="set_status", invoice_no=record.invoice_no, status=3)

    with pytest.raises(UpstreamRejectedError) as info:
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

    assert info.value.upstream_code == "1"
    assert "değiştirilemez" in str(info.value)
    record.refresh_from_db()
    assert record.status == S.WAITING
    assert writes(mirror) == []
    (call,) = calls()
    assert (call.outcome, call.upstream_code) == ("rejected", "1")
    assert call.upstream_message and call.upstream_message in str(info.value)
    assert info.value.call_id == call.pk


def test_server_error_fails_after_retries_and_leaves_the_mirror_unchanged(
    mirror, operator, settings
):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_status_update"})

    with pytest.raises(UpstreamResponseError) as info:
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

    assert "server error (HTTP 503)" in str(info.value)
    record.refresh_from_db()
    assert record.status == S.WAITING
    assert upstream_record(mirror, record)["status"] == S.WAITING
    pushes = calls("invoice_status_update")
    assert pushes.count() == settings.UPSTREAM_MAX_ATTEMPTS
    assert list(pushes.values_list("attempt", flat=True)) == [1, 2, 3]
    assert all(c.outcome != "ok" and c.status_code == 503 for c in pushes)
    assert all(c.upstream_code == "8" for c in pushes)


def test_timeout_in_doubt_is_read_back_and_raised_when_not_applied(mirror, operator, settings):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    record = a_record(S.WAITING)
    mirror.faults({"kind": "timeout", "seconds": 1, "operation": "invoice_status_update"})

    with pytest.raises(UpstreamTransportError) as info:
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

    assert info.value.in_doubt
    record.refresh_from_db()
    assert record.status == S.WAITING
    (push,) = calls("invoice_status_update")  # never sent twice
    assert push.outcome == "in_doubt"
    assert calls("invoice_list").filter(outcome="ok").exists()  # the read back
    assert writes(mirror) == []


def test_applied_but_unanswered_is_settled_by_reading_back_never_resent(mirror, operator):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1})

    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert len(writes(mirror)) == 1
    (push,) = calls("invoice_status_update")
    assert push.outcome == "in_doubt"
    assert calls("invoice_list").exists()


def test_malformed_answer_fails_and_leaves_the_mirror_unchanged(mirror, operator):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "malformed", "operation": "invoice_status_update"})

    with pytest.raises(UpstreamResponseError) as info:
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

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
            subscription=a_subscription(fixed=False), val_date=VAL_DATE, actor=operator, **amounts
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
        )

    assert info.value.message_dict["invoice_no"] == [
        f"Paynet already has a payment record {number}."
    ]
    assert SubscriptionInvoice.objects.count() == count
    (call,) = calls()
    assert (call.outcome, call.upstream_code) == ("rejected", "5")


def test_create_refused_by_paynet_saves_nothing(mirror, operator):
    subscription = a_subscription(fixed=False)
    count = SubscriptionInvoice.objects.count()
    mirror.faults({"kind": "reject", "operation": "create_invoice", "message": "Bayi bloke"})

    with pytest.raises(UpstreamRejectedError) as info:
        subscription_invoice_create(
            subscription=subscription, val_date=VAL_DATE, amount=Decimal("10"), actor=operator
        )

    assert str(info.value) == "Paynet refused: Bayi bloke (code 1)"
    assert SubscriptionInvoice.objects.count() == count
    assert writes(mirror, "create_invoice") == []
    assert list(calls().values_list("operation", "outcome")) == [("create_invoice", "rejected")]


def test_create_applied_without_an_answer_is_found_by_reading_back(mirror, operator):
    subscription = a_subscription(fixed=False)
    mirror.faults({"kind": "drop", "apply": True, "operation": "create_invoice", "times": 1})

    record = subscription_invoice_create(
        subscription=subscription, val_date=VAL_DATE, amount=Decimal("42.50"), actor=operator
    )

    (write,) = writes(mirror, "create_invoice")
    assert record.invoice_id == str(write["invoice_id"])
    assert record.amount == Decimal("42.50")
    assert calls("create_invoice").get().outcome == "in_doubt"


def test_create_lost_before_paynet_applied_it_is_reported_and_saves_nothing(mirror, operator):
    subscription = a_subscription(fixed=False)
    count = SubscriptionInvoice.objects.count()
    mirror.faults({"kind": "drop", "operation": "create_invoice", "times": 1})

    with pytest.raises(UpstreamRejectedError) as info:
        subscription_invoice_create(
            subscription=subscription, val_date=VAL_DATE, amount=Decimal("10"), actor=operator
        )

    assert "was not created" in str(info.value)
    assert SubscriptionInvoice.objects.count() == count
    assert calls("create_invoice").count() == 1  # never sent twice
    assert writes(mirror, "create_invoice") == []


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
        pk for pk, st in before.items() if status_verdict(st, S.CANCEL).kind == VerdictKind.CHANGE
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
        kind = status_verdict(record.status, S.CANCEL).kind
        expected[kind] = expected.get(kind, 0) + 1
        if kind == VerdictKind.CHANGE:
            total += record.amount
    assert preview.counts == expected
    assert preview.change_total == total
    assert sum(preview.blocked_reasons.values()) == expected.get(VerdictKind.BLOCKED, 0)
    assert len(preview.sample) == 50


# --- status of all records of a subscription -------------------------------------------------


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
            if status_verdict(st, S.DONE_UNSUCCEED).kind == VerdictKind.CHANGE
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

    result = subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)

    assert result.status == S.CANCEL
    assert writes(mirror) == []
    assert not calls().exists()


def test_set_status_judges_the_current_row_not_a_stale_copy(mirror, operator):
    record = a_record(S.WAITING)
    SubscriptionInvoice.objects.filter(pk=record.pk).update(status=S.DONE_SUCCEED)

    with pytest.raises(ValidationError):
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator)
    assert writes(mirror) == []


def test_create_confirmed_but_not_read_back_says_so_and_saves_nothing(mirror, operator):
    subscription = a_subscription(fixed=False)
    before = subscription.invoices.count()
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_list"})

    with pytest.raises(UpstreamResponseError) as raised:
        subscription_invoice_create(
            subscription=subscription, val_date=VAL_DATE, amount=Decimal("10.00"), actor=operator
        )

    assert "Refresh from Paynet" in str(raised.value)
    assert len(writes(mirror, "create_invoice")) == 1
    assert subscription.invoices.count() == before
