"""wisecp_sync and invoice_refresh: counts, formats, and what wins when a push races a sync."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from billing.client import ISTANBUL, WiseCPClient
from billing.models import Invoice, InvoiceItem
from billing.sync import SyncCounts, invoice_refresh, invoice_upsert, wisecp_sync
from tests.conftest import hold_claim
from upstream.calls.log import DbCallRecorder
from upstream.models import UpstreamCall

from .conftest import ITEM_ID, SOURCE_INVOICE_ID, upstream_invoice


def test_first_sync_creates_then_nothing_changes(sandbox, db) -> None:
    first = wisecp_sync()
    state = sandbox.state("wisecp")["invoices"]
    n_items = sum(len(i["items"]) for i in state)

    assert (first.created, first.updated, first.unchanged) == (len(state) + n_items, 0, 0)
    assert Invoice.objects.count() == len(state)
    assert InvoiceItem.objects.count() == n_items

    second = wisecp_sync()
    assert (second.created, second.updated, second.unchanged, second.deleted) == (
        0,
        0,
        len(state) + n_items,
        0,
    )


def test_sync_reports_updates_and_removals(sandbox, synced) -> None:
    client = WiseCPClient()
    client.update_invoice_item(ITEM_ID, {"description": "Değişti", "total": 10, "amount": 10})
    sandbox.wisecp_delete_item(1504)

    counts = wisecp_sync()

    # The item, and its invoice whose totals WiseCP recomputed.
    assert (counts.updated, counts.deleted, counts.created) == (2, 1, 0)
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    assert item.description == "Değişti"
    assert item.version == 2  # an open form on the old values is now stale
    assert not InvoiceItem.objects.filter(wisecp_id=1504).exists()
    assert Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID).subtotal == Decimal("10.00")


def test_values_are_normalised(sandbox, synced) -> None:
    assert sandbox.state("wisecp")["float_noise"] is True
    for data in sandbox.state("wisecp")["invoices"]:
        invoice = Invoice.objects.get(wisecp_id=data["id"])
        assert invoice.total == Decimal(str(data["total"])).quantize(Decimal("0.01"))
        assert invoice.tax == Decimal(str(data["tax"])).quantize(Decimal("0.01"))
        if data["refund_date"] == "0000-00-00 00:00:00":
            assert invoice.refund_date is None
        else:
            local = timezone.localtime(invoice.refund_date, ISTANBUL)
            assert local.strftime("%Y-%m-%d %H:%M:%S") == data["refund_date"]
        assert invoice.full_name == data["user"]["full_name"]
        assert invoice.user_id == data["user"]["id"]
    unset = InvoiceItem.objects.filter(due_date__isnull=True).count()
    zero_dates = sum(
        1
        for inv in sandbox.state("wisecp")["invoices"]
        for i in inv["items"]
        if i["due_date"] == "0000-00-00 00:00:00"
    )
    assert unset == zero_dates > 0


def test_since_only_reads_newer_invoices(sandbox, db) -> None:
    state = sandbox.state("wisecp")["invoices"]
    since = date(2024, 6, 1)
    expected = [i for i in state if i["created_at"] >= "2024-06-01 00:00:00"]

    wisecp_sync(since=since)

    assert Invoice.objects.count() == len(expected) > 0


def test_invoice_refresh_rereads_one_invoice(sandbox, synced, operator) -> None:
    WiseCPClient().update_invoice_item(ITEM_ID, {"sequence": 7})
    invoice = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)

    counts = invoice_refresh(invoice, recorder=DbCallRecorder(actor=operator))

    assert counts.updated == 1
    assert InvoiceItem.objects.get(wisecp_id=ITEM_ID).sequence == 7
    call = UpstreamCall.objects.get()
    assert (call.operation, call.outcome, call.actor) == ("GetInvoice", "ok", operator)
    assert call.request_headers["Apikey"] == "***"
    # The share token of the invoice is a secret-named key: redacted in the call log.
    assert call.response["data"]["share"]["token"] == "***"


def test_an_older_read_never_overwrites_a_newer_write(sandbox, synced) -> None:
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    stale_read = WiseCPClient().get_invoice(SOURCE_INVOICE_ID)
    read_at = item.synced_at - timedelta(seconds=5)
    stale_read["items"][0]["description"] = "Eski"
    invoice_upsert(stale_read, read_at=read_at, counts=SyncCounts())

    assert InvoiceItem.objects.get(pk=item.pk).description == item.description


def test_a_save_in_progress_is_left_to_the_save(sandbox, synced) -> None:
    hold_claim(InvoiceItem.objects.get(wisecp_id=ITEM_ID))
    WiseCPClient().update_invoice_item(ITEM_ID, {"description": "Upstream"})

    wisecp_sync()

    assert InvoiceItem.objects.get(wisecp_id=ITEM_ID).description != "Upstream"


def test_sync_command_prints_counts(sandbox, db) -> None:
    out = StringIO()
    call_command("sync", "wisecp", stdout=out)
    total = len(sandbox.state("wisecp")["invoices"]) + InvoiceItem.objects.count()
    assert out.getvalue().strip() == (
        f"wisecp: {total} created, 0 updated, 0 unchanged, 0 vanished"
    )
    assert UpstreamCall.objects.filter(operation="GetInvoices", outcome="ok").count() == 2
    assert upstream_invoice(sandbox, SOURCE_INVOICE_ID)["number"] == "#302"
