"""History without gaps: every write of a mirrored record names the call and the operation
that caused it, including records a push writes beside its target, Payofin's results (written
raw) and records settled by reading back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from billing.models import Invoice, InvoiceItem
from billing.services import invoice_item_update
from billing.sync import wisecp_sync
from billqueries.models import BillQueryLine
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_create,
    subscription_invoice_set_status,
    subscription_refresh_start,
    subscription_set_status_all,
)
from subscriptions.sync import subscription_refresh
from tests.billqueries.conftest import institutions, iski_numbers, line, run_batch  # noqa: F401
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import a_record, a_subscription
from upstream.admin.tools import record_operations
from upstream.calls.errors import PushInDoubt
from upstream.history.timeline import record_timeline
from upstream.models import Drift, Job, RecordChange, UpstreamCall
from upstream.pushes import bulk

pytestmark = pytest.mark.django_db

VAL_DATE = datetime(2030, 1, 15, 7, 0, tzinfo=UTC)
ISKI = 1  # the sandbox's İSKİ, whose numbers `iski_numbers` makes


def history(obj, **filters) -> list[RecordChange]:
    return list(
        RecordChange.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=obj.pk, **filters
        ).order_by("at", "id")
    )


def no_read_pause(monkeypatch) -> None:
    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))


# --- Payofin: results written raw ------------------------------------------------------------


def test_payofin_results_are_recorded_with_their_call_and_job(
    institutions,  # noqa: F811
    run_batch,  # noqa: F811
    operator,
):
    batch = run_batch([line(ISKI, n) for n in iski_numbers(20)])

    lines = list(batch.lines.select_related("job_item").order_by("position"))
    assert len(lines) == 20 and all(x.state == BillQueryLine.State.DONE for x in lines)
    for answered in lines:
        changes = history(answered, action="update")
        call = UpstreamCall.objects.get(
            job_item_id=answered.job_item_id, operation="multipleinvoicequery"
        )
        fields = {c.field: (c.old, c.new) for c in changes}
        assert fields["outcome"] == ("", answered.outcome)
        # Bookkeeping is not history: the row's job and call say which query answered.
        assert not {"state", "queried_at", "job_item"} & set(fields)
        if answered.debt_count:
            assert fields["debt_total"] == ("0.00", str(answered.debt_total))
        assert {(c.source, c.job_id, c.call_id, c.actor_id) for c in changes} == {
            ("operation", batch.job_id, call.pk, operator.pk)
        }
        (created,) = history(answered, action="create")
        assert (created.source, created.actor_id) == ("operation", operator.pk)

    events = record_timeline(lines[0])
    change = next(e for e in events if e.kind == "change")
    assert (change.job, change.call) == (batch.job_id, lines[0].job_item.call_id)
    # The chunk's item and its call are on the line's timeline, though aimed at the batch.
    assert [e.job for e in events if e.kind == "operation"] == [batch.job_id]
    assert [e.call for e in events if e.kind == "call"] == [lines[0].job_item.call_id]


# --- Paynet: records beside the target --------------------------------------------------------


def test_status_all_changes_carry_each_subscriptions_call(
    mirror,  # noqa: F811
    operator,
    django_capture_on_commit_callbacks,
):
    waiting = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("subscription_id")
    subs = Subscription.objects.filter(
        pk__in=list(dict.fromkeys(waiting.values_list("subscription_id", flat=True)))[:2]
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = subscription_set_status_all(
            subscriptions=subs, status=S.DONE_UNSUCCEED, actor=operator, reason="closing"
        )

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    changed = 0
    for sub in subs:
        write = UpstreamCall.objects.get(
            operation="invoices_status_update_all", target_id=str(sub.pk)
        )
        for record in SubscriptionInvoice.objects.filter(subscription=sub):
            for change in history(record, action="update"):
                changed += 1
                assert (change.field, change.new) == ("status", S.DONE_UNSUCCEED)
                assert (change.source, change.job_id, change.call_id) == (
                    "operation",
                    job.pk,
                    write.pk,
                )
                assert (change.actor, change.reason) == (operator, "closing")
    assert changed >= 2


def test_a_created_record_names_its_job_and_call_on_its_page(
    mirror,  # noqa: F811
    operator,
    operator_client,
):
    record = subscription_invoice_create(
        subscription=a_subscription(fixed=False),
        val_date=VAL_DATE,
        amount=Decimal("42.50"),
        actor=operator,
        reason="extra charge",
    )
    job = Job.objects.get(kind="paynet.create_invoice")
    call = UpstreamCall.objects.get(operation="create_invoice")

    (created,) = history(record, action="create")
    assert (created.source, created.job_id, created.call_id) == ("operation", job.pk, call.pk)
    assert (created.actor, created.reason) == (operator, "extra charge")

    events = record_timeline(record)
    row = next(e for e in events if e.kind == "created")
    assert (row.job, row.call) == (job.pk, call.pk)
    assert [e.job for e in events if e.kind == "operation"] == [job.pk]
    assert call.pk in [e.call for e in events if e.kind == "call"]
    assert [item.job_id for item in record_operations(SubscriptionInvoice, record.pk)] == [job.pk]

    page = operator_client.get(
        reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])
    ).content.decode()
    sent = page[page.index('id="record-operations"') : page.index('id="record-timeline"')]
    assert "No change has been sent for this record yet." not in sent
    assert reverse("admin:upstream_job_change", args=[job.pk]) in sent
    timeline = page[page.index('id="record-timeline"') :]
    created_row = timeline[timeline.index('data-kind="created"') :].split("</tr>")[0]
    assert reverse("admin:upstream_upstreamcall_change", args=[call.pk]) in created_row


def test_a_refresh_jobs_changes_name_the_job_and_its_read(
    mirror,  # noqa: F811
    operator,
    django_capture_on_commit_callbacks,
):
    record = a_record(S.WAITING)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.DONE_SUCCEED})

    with django_capture_on_commit_callbacks(execute=True):
        job = subscription_refresh_start(
            subscriptions=Subscription.objects.filter(pk=record.subscription_id), actor=operator
        )

    (change,) = history(record, action="update")
    read = UpstreamCall.objects.filter(job=job, operation="invoice_list").latest("id")
    assert (change.source, change.job_id, change.call_id) == ("refresh", job.pk, read.pk)


# --- WiseCP: an invoice's totals after its item's push ----------------------------------------


def test_invoice_totals_changed_by_an_item_push_carry_its_call(sandbox, operator):
    wisecp_sync()
    item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=1502)

    invoice_item_update(
        item=item,
        changes={"amount": Decimal("2000.00"), "total": Decimal("2000.00")},
        expected_version=item.version,
        actor=operator,
        reason="price fix",
    )

    push = UpstreamCall.objects.get(operation="UpdateInvoiceItem")
    invoice = Invoice.objects.get(pk=item.invoice_id)
    totals = history(invoice, action="update")
    assert {c.field for c in totals} >= {"subtotal", "total"}
    assert {(c.source, c.job_id, c.call_id, c.reason) for c in totals} == {
        ("operation", push.job_id, push.pk, "price fix")
    }
    # The item's own change names the write, not the invoice read that followed it.
    assert {c.call_id for c in history(item, action="update")} == {push.pk}


# --- settled by reading back ------------------------------------------------------------------


def test_a_record_settled_by_reading_back_in_the_request_says_so(mirror, operator):  # noqa: F811
    record = a_record(S.WAITING)
    mirror.faults({"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1})

    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")

    (change,) = history(record, action="update")
    read = UpstreamCall.objects.filter(operation="invoice_list").latest("id")
    assert (change.field, change.new) == ("status", S.CANCEL)
    assert (change.source, change.call_id, change.reason) == ("read_back", read.pk, "r")
    assert change.job_id == read.job_id is not None
    shown = next(e for e in record_timeline(record) if e.kind == "change")
    assert shown.summary.startswith("Read-back:") and shown.call == read.pk


def test_a_create_settled_by_the_worker_says_so(mirror, operator, monkeypatch):  # noqa: F811
    no_read_pause(monkeypatch)
    subscription = a_subscription(fixed=False)
    # Created at Paynet, but neither the answer nor the read-back in the request came through.
    mirror.faults(
        {"kind": "drop", "apply": True, "operation": "create_invoice", "times": 1},
        {"kind": "drop", "operation": "invoice_list", "times": 3},
    )
    with pytest.raises(PushInDoubt) as info:
        subscription_invoice_create(
            subscription=subscription,
            val_date=VAL_DATE,
            amount=Decimal("10"),
            actor=operator,
            reason="settle me",
        )

    bulk.run_job(info.value.job.pk)

    record = SubscriptionInvoice.objects.get(subscription=subscription, val_date=VAL_DATE)
    (created,) = history(record, action="create")
    read = UpstreamCall.objects.filter(operation="invoice_list", outcome="ok").latest("id")
    assert (created.source, created.job_id, created.call_id) == (
        "read_back",
        info.value.job.pk,
        read.pk,
    )
    assert UpstreamCall.objects.get(operation="create_invoice").outcome == "in_doubt"


def test_a_value_settled_by_reading_back_then_changed_upstream_is_reverted_drift(
    mirror,  # noqa: F811
    operator,
):
    record = a_record(S.WAITING)
    mirror.faults({"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1})
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.WAITING})

    subscription_refresh(record.subscription)

    drift = Drift.objects.get(object_id=record.pk)
    assert (drift.kind, drift.expected, drift.found) == ("reverted", S.CANCEL, S.WAITING)
