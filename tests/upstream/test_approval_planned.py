"""The approval page plans every push kind that can wait for approval: each record's customer
(masked as the reader may see it), ₺ and current → new value, single pushes and bulk alike."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from billing.models import Invoice, InvoiceItem
from billing.services import invoice_item_bulk_update, invoice_item_update
from billing.sync import wisecp_sync
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_create,
    subscription_invoice_set_status,
    subscription_set_status_all,
)
from subscriptions.sync import paynet_sync
from upstream.calls.errors import AwaitingApproval
from upstream.l10n.formats import day, money
from upstream.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def everything_waits(settings, queued_tasks):
    settings.APPROVAL_MIN_ITEMS = 1
    settings.APPROVAL_MIN_AMOUNT = Decimal("0.01")
    return settings


@pytest.fixture
def both(sandbox, db):
    paynet_sync()
    wisecp_sync()
    return sandbox


def rows(client, job: Job, user) -> list[list[str]]:
    """The approval table's cells, row by row, as `user` reads them in English."""
    client.force_login(user)
    client.cookies["django_language"] = "en"
    page = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert 'id="approval-sample"' in page, "no approval table"
    table = page.split('id="approval-sample"')[1].split("</tbody>")[0].split("<tbody>")[1]
    return [
        [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in table.split("</tr>")[:-1]
    ]


def waited(call) -> Job:
    with pytest.raises(AwaitingApproval) as waiting:
        call()
    return waiting.value.job


def test_a_single_status_push_shows_its_record_and_change(both, operator, approver, client):
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).first()
    job = waited(
        lambda: subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="r"
        )
    )

    ((no, customer, amount, now, after),) = rows(client, job, approver)

    assert (no, customer) == (record.invoice_no, record.subscription.name_surname)
    assert (amount, now, after) == (money(record.amount), record.get_status_display(), "Cancelled")


def test_status_all_shows_each_subscriptions_changing_records(both, operator, approver, client):
    sub = Subscription.objects.filter(invoices__status=S.WAITING).first()
    job = subscription_set_status_all(
        subscriptions=Subscription.objects.filter(pk=sub.pk),
        status=S.CANCEL,
        actor=operator,
        reason="r",
    )
    assert job.state == Job.State.AWAITING_APPROVAL

    ((ref, customer, amount, now, after),) = rows(client, job, approver)

    assert (ref, customer, after) == (sub.reference_no, sub.name_surname, "Cancelled")
    # The statuses that change, by name, and what those records weigh.
    with translation.override("en"):
        labels = {str(label): value for value, label in S.choices}
    assert now and set(now.split(", ")) <= set(labels) and "Cancelled" not in now
    changing = sub.invoices.filter(status__in=[labels[n] for n in now.split(", ")])
    assert amount == money(sum((r.amount for r in changing), Decimal("0")))


def test_a_create_shows_the_new_record(both, operator, approver, viewer, client):
    sub = Subscription.objects.filter(is_fixed_price=False).first()
    when = timezone.make_aware(
        datetime.combine(timezone.localdate() + timedelta(days=9), datetime.min.time()).replace(
            hour=10
        )
    )
    job = waited(
        lambda: subscription_invoice_create(
            subscription=sub,
            val_date=when,
            amount=Decimal("123.45"),
            invoice_no="NEW-1",
            actor=operator,
            reason="extra charge",
        )
    )

    ((ref, customer, amount, now, after),) = rows(client, job, approver)

    assert (ref, customer, amount) == (sub.reference_no, sub.name_surname, money(Decimal("123.45")))
    assert (now, after) == ("no payment record", f"payment record NEW-1, charged {day(when)}")
    ((_ref, masked, *_rest),) = rows(client, job, viewer)
    assert masked != sub.name_surname and "*" in masked


def test_a_wisecp_item_edit_shows_its_invoice_customer_and_fields(
    both, operator, approver, viewer, client
):
    item = InvoiceItem.objects.select_related("invoice").filter(invoice__status="unpaid").first()
    job = waited(
        lambda: invoice_item_update(
            item=item,
            changes={"description": "Hosting, renamed"},
            expected_version=item.version,
            actor=operator,
            reason="r",
        )
    )

    ((record, customer, amount, now, after),) = rows(client, job, approver)

    assert str(item.invoice) in record and customer == item.invoice.customer
    assert (amount, now, after) == (money(item.total), item.description, "Hosting, renamed")
    ((_record, masked, *_rest),) = rows(client, job, viewer)
    assert item.invoice.full_name and item.invoice.full_name not in masked


@pytest.mark.parametrize("action", ["due_date", "move"])
def test_a_bulk_item_job_shows_each_items_change_before_its_items_are_written(
    both, operator, approver, client, action
):
    items = InvoiceItem.objects.select_related("invoice").filter(invoice__status="unpaid")
    first = items.order_by("pk").first()
    selection = InvoiceItem.objects.filter(pk=first.pk)
    if action == "due_date":
        value = timezone.now().replace(microsecond=0) + timedelta(days=30)
        expected_after = day(value)
    else:
        value = (
            Invoice.objects.filter(
                user_id=first.invoice.user_id,
                currency=first.invoice.currency,
                status="unpaid",
            )
            .exclude(pk=first.invoice_id)
            .first()
        )
        if value is None:
            pytest.skip("the sandbox has no second unpaid invoice of this customer")
        expected_after = str(value)
    job = invoice_item_bulk_update(
        items=selection, action=action, value=value, actor=operator, reason="r"
    )
    assert job.state == Job.State.AWAITING_APPROVAL and not job.items.exists()

    ((record, customer, amount, now, after),) = rows(client, job, approver)

    assert str(first.invoice) in record and customer == first.invoice.customer
    assert amount == money(first.total) and after == expected_after
    assert now == (day(first.due_date) or "—" if action == "due_date" else str(first.invoice))
    assert (
        f'id="approval-sample-total">{money(job.amount)}<'
        in client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    )
