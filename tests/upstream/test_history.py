"""Field-level history of mirrored records: every write path, with its source."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db.models import F

from billing.models import Invoice, InvoiceItem
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status
from subscriptions.sync import subscription_refresh
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import a_record
from upstream.history.changes import history_source
from upstream.models import RecordChange, UpstreamCall

pytestmark = pytest.mark.django_db


def history(obj, **filters) -> list[RecordChange]:
    return list(
        RecordChange.objects.filter(
            content_type=ContentType.objects.get_for_model(obj),
            object_id=obj.pk,
            **filters,
        ).order_by("at", "id")
    )


@pytest.fixture
def sub() -> Subscription:
    return Subscription.objects.create(subscription_id="s-1", reference_no="R1")


def _record(sub: Subscription, no: str, status: int = S.WAITING) -> SubscriptionInvoice:
    return SubscriptionInvoice(
        subscription=sub,
        invoice_id=f"id-{no}",
        invoice_no=no,
        amount=Decimal("100.00"),
        status=status,
        val_date=datetime(2026, 1, 5, 10, tzinfo=UTC),
    )


def test_create_and_save_are_recorded_field_by_field(sub):
    record = _record(sub, "1")
    record.save()
    (created,) = history(record)
    assert created.action == "create"
    assert created.new["amount"] == "100.00" and created.new["status"] == S.WAITING

    record.amount = Decimal("120.50")
    record.synced_at = datetime.now(UTC)  # local bookkeeping: not history
    record.save(update_fields=["amount", "synced_at"])

    changes = history(record, action="update")
    assert [(c.field, c.old, c.new) for c in changes] == [("amount", "100.00", "120.50")]
    assert changes[0].source == "other"


def test_queryset_update_is_recorded_per_row(sub):
    a, b = SubscriptionInvoice.objects.bulk_create([_record(sub, "1"), _record(sub, "2", S.CANCEL)])

    with history_source("sync"):
        updated = SubscriptionInvoice.objects.filter(subscription=sub).update(status=S.DELETED)

    assert updated == 2
    assert [(c.field, c.old, c.new, c.source) for c in history(a, action="update")] == [
        ("status", S.WAITING, S.DELETED, "sync")
    ]
    assert [(c.old, c.new) for c in history(b, action="update")] == [(S.CANCEL, S.DELETED)]


def test_an_update_that_changes_nothing_records_nothing(sub):
    a = SubscriptionInvoice.objects.bulk_create([_record(sub, "1")])[0]
    SubscriptionInvoice.objects.filter(pk=a.pk).update(status=S.WAITING)
    assert history(a, action="update") == []


def test_update_with_an_expression_records_the_value_written(sub):
    a = SubscriptionInvoice.objects.bulk_create([_record(sub, "1")])[0]
    SubscriptionInvoice.objects.filter(pk=a.pk).update(amount=F("amount") + 1)
    (change,) = history(a, action="update")
    assert (change.old, change.new) == ("100.00", "101.00")


def test_bulk_update_is_recorded(sub):
    rows = SubscriptionInvoice.objects.bulk_create([_record(sub, str(n)) for n in range(3)])
    for n, row in enumerate(rows):
        row.amount = Decimal(200 + n)
    rows[2].amount = Decimal("100.00")  # unchanged

    with history_source("refresh"):
        SubscriptionInvoice.objects.bulk_update(rows, ["amount", "status"], batch_size=2)

    assert [(c.old, c.new, c.source) for c in history(rows[0], action="update")] == [
        ("100.00", "200.00", "refresh")
    ]
    assert history(rows[1], action="update")[0].new == "201.00"
    assert history(rows[2], action="update") == []


def test_bulk_create_and_queryset_delete_are_recorded(sub):
    invoice = Invoice.objects.create(wisecp_id=1, number="F1", status="unpaid")
    items = InvoiceItem.objects.bulk_create(
        [
            InvoiceItem(wisecp_id=10 + n, invoice=invoice, description="x", amount=1, total=1)
            for n in range(2)
        ]
    )
    assert all(history(i, action="create") for i in items)

    with history_source("sync"):
        InvoiceItem.objects.filter(invoice=invoice).delete()

    for item in items:
        (deleted,) = history(item, action="delete")
        assert deleted.old["description"] == "x" and deleted.source == "sync"


def test_a_move_records_the_item_invoice(sub):
    one = Invoice.objects.create(wisecp_id=1, number="F1", status="unpaid")
    two = Invoice.objects.create(wisecp_id=2, number="F2", status="unpaid")
    item = InvoiceItem.objects.create(wisecp_id=10, invoice=one, description="x", amount=1, total=1)
    InvoiceItem.objects.filter(pk=item.pk).update(invoice=two, version=F("version") + 1)
    (change,) = history(item, action="update")
    assert (change.field, change.old, change.new) == ("invoice", one.pk, two.pk)


def test_a_push_records_actor_reason_job_and_call(mirror, operator):  # noqa: F811
    record = a_record(S.WAITING)

    subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="customer asked"
    )

    (change,) = history(record, action="update")
    call = UpstreamCall.objects.get(operation="invoice_status_update")
    assert (change.field, change.old, change.new) == ("status", S.WAITING, S.CANCEL)
    assert change.source == "operation"
    assert (change.actor, change.reason) == (operator, "customer asked")
    assert change.job_id == call.job_id is not None
    assert change.call_id == call.pk


def test_a_refresh_records_the_upstream_change_with_its_source(mirror, operator):  # noqa: F811
    record = a_record(S.WAITING)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.DONE_SUCCEED})

    subscription_refresh(record.subscription)

    (change,) = history(record, action="update")
    assert (change.field, change.old, change.new, change.source) == (
        "status",
        S.WAITING,
        S.DONE_SUCCEED,
        "refresh",
    )
