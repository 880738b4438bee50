"""A sync never undoes a push (issue 17, item 2): one rule for every upstream's sync apply.

A read that began before a push to a record, or while the record was claimed, neither writes
that record nor opens drift from it; the record is left for the next sync.
"""

from __future__ import annotations

import pytest

from billing.client import WiseCPClient
from billing.models import Invoice, InvoiceItem
from billing.services import invoice_item_update
from billing.sync import wisecp_sync
from subscriptions.client import PaynetClient
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status
from subscriptions.sync import paynet_sync, subscription_refresh
from tests.billing.conftest import SOURCE_INVOICE_ID, TARGET_INVOICE_ID, synced  # noqa: F401
from tests.conftest import hold_claim
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import a_record, upstream_record
from upstream.models import Drift

pytestmark = pytest.mark.django_db

# Seed 1: an item of #358 (same customer as #302, both unpaid), which may move to #302.
MOVED_ITEM_ID = 1638


def _answer_late(monkeypatch, cls, method: str, key: str, target, push) -> None:
    """The read of `target` is answered as it was before `push` ran (a slow answer)."""
    real = getattr(cls, method)
    pending = [push]

    def late(self, *args, **kwargs):
        answer = real(self, *args, **kwargs)
        answer = answer if isinstance(answer, dict) else list(answer)
        if pending and kwargs.get(key, args[0] if args else None) == target:
            pending.pop()()
        return answer if isinstance(answer, dict) else iter(answer)

    monkeypatch.setattr(cls, method, late)


def test_a_paynet_sync_answered_after_a_status_push_keeps_the_pushed_status(
    mirror,  # noqa: F811
    operator,
    monkeypatch,
):
    record = a_record(S.WAITING)
    # Another record of the same subscription, changed at Paynet: the sync still takes it.
    other = a_record(S.WAITING, subscription=record.subscription, pk__gt=record.pk)
    mirror.tamper("paynet", invoice_no=other.invoice_no, fields={"amount": 12345})

    def push() -> None:
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")

    _answer_late(
        monkeypatch,
        PaynetClient,
        "iter_invoices",
        "subscription_id",
        record.subscription.subscription_id,
        push,
    )

    counts = paynet_sync()

    assert upstream_record(mirror, record)["status"] == S.CANCEL
    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert not Drift.objects.filter(object_id=record.pk).exists()
    assert counts.held == 1
    # The guard holds back only the pushed record.
    other.refresh_from_db()
    assert str(other.amount) == "123.45"

    # The next sync reads after the push: nothing to hold, nothing to undo.
    monkeypatch.undo()
    assert paynet_sync().held == 0
    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert not Drift.objects.filter(object_id=record.pk).exists()


def test_a_paynet_record_claimed_by_a_push_in_flight_is_left_to_the_push(mirror):  # noqa: F811
    record = a_record(S.WAITING)
    hold_claim(record)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.CANCEL})

    paynet_sync()
    subscription_refresh(record.subscription)

    record.refresh_from_db()
    assert record.status == S.WAITING
    assert not Drift.objects.exists()


def test_a_paynet_record_not_pushed_is_still_updated_with_its_drift(mirror):  # noqa: F811
    record = a_record(S.WAITING)
    hold_claim(a_record(S.WAITING, pk__gt=record.pk))  # another record's push holds nothing here
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.CANCEL})

    paynet_sync()

    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert Drift.objects.get().object_id == record.pk


def test_a_paynet_sync_keeps_a_record_whose_subscription_a_push_holds(mirror):  # noqa: F811
    # A change of all records of a subscription (or a create on it) claims the subscription.
    record = a_record(S.WAITING)
    hold_claim(record.subscription)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.CANCEL})

    paynet_sync()

    record.refresh_from_db()
    assert record.status == S.WAITING
    assert not Drift.objects.exists()


def test_a_wisecp_sync_whose_reads_began_before_a_move_keeps_the_moved_item(
    sandbox,
    synced,  # noqa: F811
    operator,
    monkeypatch,
):
    # GetInvoices lists oldest first: #302 is read (without the item), then the item moves
    # from #358 to #302, then #358 is read (without it): no read lists it any more.
    item = InvoiceItem.objects.get(wisecp_id=MOVED_ITEM_ID)
    assert item.invoice.wisecp_id == TARGET_INVOICE_ID
    target = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)

    def push() -> None:
        invoice_item_update(
            item=item,
            changes={"invoice": target},
            expected_version=item.version,
            actor=operator,
            reason="r",
        )

    _answer_late(monkeypatch, WiseCPClient, "get_invoice", "invoice_id", SOURCE_INVOICE_ID, push)

    counts = wisecp_sync()

    moved = InvoiceItem.objects.select_related("invoice").get(pk=item.pk)
    assert moved.invoice.wisecp_id == SOURCE_INVOICE_ID
    assert counts.held == 1
    assert not Drift.objects.exists()

    monkeypatch.undo()
    assert wisecp_sync().held == 0
    moved = InvoiceItem.objects.select_related("invoice").get(pk=item.pk)
    assert moved.invoice.wisecp_id == SOURCE_INVOICE_ID


def test_a_wisecp_item_claimed_by_a_push_in_flight_is_neither_written_nor_removed(
    sandbox,
    synced,  # noqa: F811
):
    held = InvoiceItem.objects.get(wisecp_id=MOVED_ITEM_ID)
    free = InvoiceItem.objects.exclude(pk=held.pk).order_by("pk").first()
    hold_claim(held)
    sandbox.tamper("wisecp", item_id=MOVED_ITEM_ID, delete=True)
    WiseCPClient().update_invoice_item(free.wisecp_id, {"description": "Upstream"})

    wisecp_sync()

    assert InvoiceItem.objects.filter(pk=held.pk).exists()
    # The guard holds back only the claimed item.
    assert InvoiceItem.objects.get(pk=free.pk).description == "Upstream"


def test_a_claim_that_ran_out_holds_nothing(mirror):  # noqa: F811
    record = a_record(S.WAITING)
    hold_claim(record, seconds=-1)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.CANCEL})

    paynet_sync()

    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert SubscriptionInvoice.objects.filter(pk=record.pk, status=S.CANCEL).exists()
