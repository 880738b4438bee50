"""invoice_item_update against the sandbox over real HTTP: the push, its record, the mirror."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError

from billing import pushes
from billing.client import ISTANBUL
from billing.models import Invoice, InvoiceItem
from billing.services import (
    ConflictError,
    InvoiceClosed,
    invoice_item_bulk_preview,
    invoice_item_bulk_update,
    invoice_item_update,
)
from tests.conftest import hold_claim
from upstream.calls.errors import (
    PushConflict,
    PushInDoubt,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejectedError,
)
from upstream.models import Drift, Job, RecordClaim, UpstreamCall
from upstream.pushes import bulk

from .conftest import (
    EURO_INVOICE_ID,
    ITEM_ID,
    PAID_ITEM_ID,
    PAID_SAME_CUSTOMER_ID,
    SOURCE_INVOICE_ID,
    TARGET_INVOICE_ID,
    item_puts,
    mirror_of,
    upstream_invoice,
    upstream_item,
)


def push(item, operator, *, reason="Düzeltme", override=False, **changes):
    return invoice_item_update(
        item=item,
        changes=changes,
        expected_version=item.version,
        actor=operator,
        reason=reason,
        override=override,
    )


def test_update_sends_only_changed_fields_and_mirrors_the_answer(sandbox, item, operator) -> None:
    new_due = datetime(2025, 3, 1, 23, 59, 59, tzinfo=ISTANBUL)

    updated = push(
        item,
        operator,
        description="Kurumsal E-posta - 25 Hesap - Yıllık",
        due_date=new_due,
        quantity=item.quantity,  # unchanged: not sent
        sequence=item.sequence,
    )

    [put] = item_puts(sandbox)
    assert put["item_id"] == item.wisecp_id
    assert put["request"] == {
        "description": "Kurumsal E-posta - 25 Hesap - Yıllık",
        "due_date": "2025-03-01 23:59:59",
    }
    assert updated.description == "Kurumsal E-posta - 25 Hesap - Yıllık"
    assert updated.due_date == new_due
    assert updated.version == item.version + 1
    assert not RecordClaim.objects.exists()  # the claim went with the push
    upstream = upstream_item(sandbox, item.wisecp_id)
    assert upstream["due_date"] == "2025-03-01 23:59:59"
    [call] = UpstreamCall.objects.filter(operation="UpdateInvoiceItem")
    assert (call.method, call.outcome, call.status_code) == ("PUT", "ok", 200)
    assert call.url.endswith(f"/wisecp/api/Billing/UpdateInvoiceItem/{item.wisecp_id}")
    assert call.request_headers["Apikey"] == "***"
    assert call.actor == operator
    assert call.target_id == str(item.pk)
    # No totals changed: no invoice read.
    assert not UpstreamCall.objects.filter(operation="GetInvoice").exists()


def test_a_unit_price_change_sends_quantity_times_unit_price(sandbox, synced, operator) -> None:
    # WiseCP sets the total to the unit price when only the price is sent (wisecp.md §7.2);
    # we send quantity × unit price along. #316's (unpaid) item 1540 is 4 × 25.00.
    four = InvoiceItem.objects.select_related("invoice").get(wisecp_id=1540)

    updated = push(four, operator, amount=Decimal("120.00"))

    [put] = item_puts(sandbox)
    assert put["request"] == {"amount": 120.0, "total": 480.0}
    assert (updated.amount, updated.total) == (Decimal("120.00"), Decimal("480.00"))


def test_a_quantity_change_sends_the_new_total(sandbox, item, operator) -> None:
    updated = push(item, operator, quantity=3)

    assert item_puts(sandbox)[0]["request"] == {"quantity": 3, "total": 3597.0}
    assert updated.total == Decimal("3597.00")


def test_an_explicit_total_is_sent_as_given(sandbox, item, operator) -> None:
    updated = push(item, operator, quantity=2, amount=Decimal("100.00"), total=Decimal("150.00"))

    assert item_puts(sandbox)[0]["request"] == {"quantity": 2, "amount": 100.0, "total": 150.0}
    assert updated.total == Decimal("150.00")


def test_a_total_equal_to_the_mirror_is_still_sent_with_the_price(sandbox, item, operator):
    push(item, operator, amount=Decimal("1000.00"), total=item.total)

    assert item_puts(sandbox)[0]["request"] == {"amount": 1000.0, "total": float(item.total)}


def test_mirror_is_written_from_the_upstream_answer_not_the_request(
    sandbox, item, operator
) -> None:
    updated = push(item, operator, amount=Decimal("1250.50"))

    assert updated.amount == Decimal("1250.50")
    assert updated.total == Decimal(str(upstream_item(sandbox, item.wisecp_id)["total"]))


def test_a_total_change_refreshes_the_invoice_totals_from_wisecp(sandbox, item, operator) -> None:
    push(item, operator, total=Decimal("2000.00"), amount=Decimal("2000.00"))

    invoice = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)
    upstream = upstream_invoice(sandbox, SOURCE_INVOICE_ID)
    assert invoice.subtotal == Decimal(str(upstream["subtotal"]))
    assert invoice.total == Decimal(str(upstream["total"]))
    assert invoice.subtotal == Decimal("2149.90")
    assert UpstreamCall.objects.filter(operation="GetInvoice", outcome="ok").count() == 1


def test_float_noise_totals_are_stored_as_two_place_decimals(sandbox, item, operator) -> None:
    assert sandbox.state("wisecp")["float_noise"] is True
    push(item, operator, tax_exempt=True)

    invoice = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)
    upstream = upstream_invoice(sandbox, SOURCE_INVOICE_ID)
    assert invoice.tax == Decimal(str(upstream["tax"])).quantize(Decimal("0.01"))
    assert invoice.tax.as_tuple().exponent == -2


def test_nothing_changed_sends_nothing(sandbox, item, operator) -> None:
    same = push(item, operator, description=item.description, due_date=item.due_date)

    assert same.version == item.version
    assert item_puts(sandbox) == []
    assert not UpstreamCall.objects.exists()


def test_clearing_the_due_date_sends_the_zero_date(sandbox, item, operator) -> None:
    updated = push(item, operator, due_date=None)

    assert item_puts(sandbox)[0]["request"] == {"due_date": "0000-00-00 00:00:00"}
    assert updated.due_date is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"due_date": "31.12.2025"}, "due_date"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"tax_exempt": "yes"}, "tax_exempt"),
        ({"attributes": ["a"]}, "attributes"),
        ({"description": "  "}, "description"),
        ({"invoice": 999_999}, "invoice"),
        ({"owner_id": 306}, "__all__"),
    ],
)
def test_invalid_changes_are_refused_before_anything_is_sent(
    sandbox, item, operator, changes, field
) -> None:
    before = mirror_of(item)

    with pytest.raises(ValidationError) as caught:
        invoice_item_update(
            item=item, changes=changes, expected_version=item.version, actor=operator
        )

    assert field in caught.value.message_dict
    assert mirror_of(item) == before
    assert item_puts(sandbox) == []
    assert not UpstreamCall.objects.exists()


def test_viewer_may_not_push(sandbox, item, viewer) -> None:
    with pytest.raises(PermissionDenied):
        push(item, viewer, description="x")
    assert item_puts(sandbox) == []


# Refusals and failures -------------------------------------------------------------------------


def _assert_refused_cleanly(sandbox, item, before, *, outcomes: list[str]) -> None:
    assert mirror_of(item) == before  # lock released, nothing else touched
    assert item_puts(sandbox) == []
    calls = UpstreamCall.objects.filter(operation="UpdateInvoiceItem").order_by("id")
    assert [c.outcome for c in calls] == outcomes
    for call in UpstreamCall.objects.all():
        assert call.request_headers["Apikey"] == "***"
        assert "sandbox-wisecp" not in str(call.request_headers)


def test_error_status_in_a_200_leaves_the_mirror_unchanged(sandbox, item, operator) -> None:
    sandbox.faults(
        {
            "kind": "reject",
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
            "message": "Fatura kilitli: ödenmiş faturanın kalemleri değiştirilemez",
        }
    )
    before = mirror_of(item)

    with pytest.raises(UpstreamRejectedError) as caught:
        push(item, operator, description="Yeni")

    assert "Fatura kilitli" in str(caught.value)
    _assert_refused_cleanly(sandbox, item, before, outcomes=["rejected"])
    call = UpstreamCall.objects.get(operation="UpdateInvoiceItem")
    assert (call.status_code, call.upstream_code, call.outcome) == (200, "", "rejected")


def test_readonly_paid_invoice_is_a_400_rejection(sandbox, synced, operator) -> None:
    sandbox.command("wisecp", command="readonly_paid", value=True)
    paid_item = InvoiceItem.objects.get(wisecp_id=1511)  # on #306, paid
    before = mirror_of(paid_item)

    with pytest.raises(UpstreamRejectedError) as caught:
        push(paid_item, operator, sequence=9)

    assert "cannot be changed" in str(caught.value)
    # Read back at once: the message says what WiseCP holds.
    assert "WiseCP holds invoice" in str(caught.value) and "“Paid”" in str(caught.value)
    _assert_refused_cleanly(sandbox, paid_item, before, outcomes=["rejected"])
    assert UpstreamCall.objects.get(operation="UpdateInvoiceItem").status_code == 400
    assert UpstreamCall.objects.filter(operation="GetInvoice").count() == 1


def test_401_bad_key(sandbox, item, operator, settings) -> None:
    settings.WISECP_API_KEY = "not-the-key"
    before = mirror_of(item)

    with pytest.raises(UpstreamAuthError) as caught:
        push(item, operator, description="Yeni")

    assert "refused our credentials: Invalid API key" in str(caught.value)
    assert "not-the-key" not in str(caught.value)
    _assert_refused_cleanly(sandbox, item, before, outcomes=["rejected"])
    call = UpstreamCall.objects.get()
    assert call.status_code == 401
    assert call.request_headers["Apikey"] == "***"


def test_403_key_without_the_permission(sandbox, item, operator, settings) -> None:
    settings.WISECP_API_KEY = "sandbox-wisecp-readonly-key"
    before = mirror_of(item)

    with pytest.raises(UpstreamAuthError) as caught:
        push(item, operator, description="Yeni")

    assert "No permission for Billing/UpdateInvoiceItem" in str(caught.value)
    _assert_refused_cleanly(sandbox, item, before, outcomes=["rejected"])
    assert UpstreamCall.objects.get().status_code == 403


def test_403_ip_not_allowed(sandbox, item, operator) -> None:
    sandbox.command("wisecp", command="set_allowed_ips", ips=["10.9.9.9"])
    before = mirror_of(item)

    with pytest.raises(UpstreamAuthError) as caught:
        push(item, operator, description="Yeni")

    assert "IP address not allowed" in str(caught.value)
    _assert_refused_cleanly(sandbox, item, before, outcomes=["rejected"])


def test_404_item_deleted_upstream(sandbox, item, operator) -> None:
    sandbox.wisecp_delete_item(item.wisecp_id)
    before = mirror_of(item)

    with pytest.raises(UpstreamRejectedError) as caught:
        push(item, operator, description="Yeni")

    assert "Invoice item not found" in str(caught.value)
    # Read back at once: WiseCP's invoice no longer lists it, so the mirror drops it too.
    assert "without this item" in str(caught.value)
    assert before is not None
    assert not InvoiceItem.objects.filter(pk=item.pk).exists()
    assert item_puts(sandbox) == []
    assert UpstreamCall.objects.get(operation="UpdateInvoiceItem").status_code == 404
    drift = Drift.objects.get()
    assert (drift.kind, drift.record_label) == ("missing", str(item.wisecp_id))


@pytest.mark.parametrize(
    ("fault", "says", "outcomes"),
    [
        (
            {"kind": "status", "status": 503},
            "server error (HTTP 503)",
            ["failed", "failed", "in_doubt"],
        ),
        ({"kind": "malformed"}, "not JSON", ["in_doubt"]),
        ({"kind": "timeout", "seconds": 0.5}, "did not answer in time", ["in_doubt"]),
    ],
)
def test_an_unanswered_edit_is_read_back_then_left_in_doubt_for_the_worker(
    sandbox, item, operator, settings, monkeypatch, fault, says, outcomes
) -> None:
    settings.UPSTREAM_READ_TIMEOUT = 0.2
    sandbox.faults(
        {**fault, "service": "wisecp", "operation": "UpdateInvoiceItem", "times": len(outcomes)}
    )
    before = mirror_of(item)

    with pytest.raises(PushInDoubt) as caught:
        push(item, operator, description="Yeni")

    assert says in str(caught.value) and "being checked" in str(caught.value)
    _assert_refused_cleanly(sandbox, item, before, outcomes=outcomes)
    # Read back once in the request: not there, so nothing is claimed either way yet.
    assert UpstreamCall.objects.filter(operation="GetInvoice", outcome="ok").count() == 1

    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))
    bulk.run_job(caught.value.job.pk)

    # The worker reads back again, finds it not applied and sends it once more.
    assert [p["request"]["description"] for p in item_puts(sandbox)] == ["Yeni"]
    assert InvoiceItem.objects.get(pk=item.pk).description == "Yeni"


def test_applied_but_unanswered_push_is_settled_by_reading_back(sandbox, item, operator) -> None:
    sandbox.faults(
        {"kind": "drop", "apply": True, "service": "wisecp", "operation": "UpdateInvoiceItem"}
    )

    updated = push(item, operator, description="Uygulandı ama yanıt gelmedi")

    assert updated.description == "Uygulandı ama yanıt gelmedi"
    assert updated.version == item.version + 1
    assert len(item_puts(sandbox)) == 1  # sent once, never resent
    outcomes = list(UpstreamCall.objects.order_by("id").values_list("operation", "outcome"))
    assert outcomes == [("UpdateInvoiceItem", "in_doubt"), ("GetInvoice", "ok")]


def test_read_back_failing_too_keeps_it_in_doubt(sandbox, item, operator, settings) -> None:
    sandbox.faults({"kind": "drop", "service": "wisecp"})
    before = mirror_of(item)

    with pytest.raises(PushInDoubt) as caught:
        push(item, operator, description="Yeni")

    assert "closed the connection" in str(caught.value)
    assert caught.value.job.items.get().in_doubt
    assert mirror_of(item) == before


# Concurrency guard -----------------------------------------------------------------------------


def test_stale_version_is_refused_as_a_conflict(sandbox, item, operator) -> None:
    opened_at = item.version
    push(item, operator, description="Birinci")
    fresh = InvoiceItem.objects.get(pk=item.pk)

    with pytest.raises(ConflictError) as caught:
        invoice_item_update(
            item=fresh,
            changes={"quantity": 3},
            expected_version=opened_at,
            actor=operator,
            reason="Adet",
        )

    assert "changed since you opened it" in str(caught.value)
    assert caught.value.current_version == opened_at + 1
    assert len(item_puts(sandbox)) == 1
    assert InvoiceItem.objects.get(pk=item.pk).quantity == item.quantity


def test_a_stale_instance_is_refused_even_with_its_own_version(sandbox, item, operator) -> None:
    stale = InvoiceItem.objects.get(pk=item.pk)
    push(item, operator, description="Birinci")

    with pytest.raises(ConflictError):
        push(stale, operator, description="İkinci")
    assert len(item_puts(sandbox)) == 1


def test_a_save_in_progress_blocks_another(sandbox, item, operator) -> None:
    hold_claim(item, holder="other-save")

    with pytest.raises(ConflictError) as caught:
        push(item, operator, description="Yeni")

    assert "is being sent right now" in str(caught.value)
    assert item_puts(sandbox) == []
    assert RecordClaim.objects.get().holder == "other-save"
    assert not Job.objects.exists()  # refused before anything was recorded or sent


def test_an_expired_lock_does_not_block(sandbox, item, operator) -> None:
    hold_claim(item, holder="crashed-save", seconds=-1)

    push(item, operator, description="Yeni")

    assert not RecordClaim.objects.exists()
    assert len(item_puts(sandbox)) == 1


# Moves -----------------------------------------------------------------------------------------


def test_move_sends_owner_id_and_refreshes_both_invoices(
    sandbox, item, target_invoice, operator
) -> None:
    source = item.invoice
    old_total = source.total

    moved = push(item, operator, invoice=target_invoice)

    [put] = item_puts(sandbox)
    assert put["request"] == {"owner_id": TARGET_INVOICE_ID}
    assert put["from_invoice_id"] == SOURCE_INVOICE_ID
    assert moved.invoice == target_invoice
    for invoice_id in (SOURCE_INVOICE_ID, TARGET_INVOICE_ID):
        mirrored = Invoice.objects.get(wisecp_id=invoice_id)
        upstream = upstream_invoice(sandbox, invoice_id)
        assert (mirrored.subtotal, mirrored.tax, mirrored.total) == tuple(
            Decimal(str(upstream[k])).quantize(Decimal("0.01"))
            for k in ("subtotal", "tax", "total")
        )
    assert Invoice.objects.get(pk=source.pk).total < old_total
    reads = UpstreamCall.objects.filter(operation="GetInvoice").values_list("url", flat=True)
    assert sorted(u.rsplit("/", 1)[1] for u in reads) == ["302", "358"]


def test_move_in_doubt_is_settled_on_the_target_invoice(
    sandbox, item, target_invoice, operator
) -> None:
    sandbox.faults(
        {"kind": "drop", "apply": True, "service": "wisecp", "operation": "UpdateInvoiceItem"}
    )

    moved = push(item, operator, invoice=target_invoice)

    assert moved.invoice == target_invoice
    first_read = UpstreamCall.objects.filter(operation="GetInvoice").order_by("id").first()
    assert first_read.url.endswith("/GetInvoice/358")


def test_upstream_errors_are_typed(sandbox, item, operator) -> None:
    # Anything the client raises for WiseCP is an UpstreamError the admin and API can show.
    sandbox.faults({"kind": "reject", "service": "wisecp", "operation": "UpdateInvoiceItem"})
    with pytest.raises(UpstreamError) as caught:
        push(item, operator, sequence=5)
    assert caught.value.call_id == UpstreamCall.objects.get(operation="UpdateInvoiceItem").pk


# Rules (the item update kind, billing/pushes.py), the same for every path --------------------


def _with_override(user):
    user.user_permissions.add(
        Permission.objects.get(
            codename="override_closed_invoice", content_type__app_label="billing"
        )
    )
    return type(user).objects.get(pk=user.pk)


def _refused_before_sending(sandbox, item, before) -> None:
    assert mirror_of(item) == before
    assert item_puts(sandbox) == []
    assert not UpstreamCall.objects.exists()


def test_a_money_change_needs_a_reason(sandbox, item, operator) -> None:
    before = mirror_of(item)
    for changes in ({"amount": Decimal("1.00")}, {"quantity": 2}, {"tax_exempt": True}):
        with pytest.raises(ValidationError) as caught:
            push(item, operator, reason="  ", **changes)
        assert "reason" in caught.value.message_dict
    _refused_before_sending(sandbox, item, before)

    push(item, operator, reason="", description="Açıklama için gerekmez")
    assert len(item_puts(sandbox)) == 1


def test_a_move_needs_a_reason(sandbox, item, target_invoice, operator) -> None:
    with pytest.raises(ValidationError) as caught:
        push(item, operator, reason="", invoice=target_invoice)
    assert "reason" in caught.value.message_dict
    assert item_puts(sandbox) == []


def test_no_move_to_another_customers_invoice(sandbox, item, operator) -> None:
    other = Invoice.objects.get(wisecp_id=310)  # TRY, unpaid, Burak Öztürk
    before = mirror_of(item)

    with pytest.raises(ValidationError) as caught:
        push(item, operator, invoice=other)

    [message] = caught.value.message_dict["invoice"]
    assert "Merve Koç" in message and "Burak Öztürk" in message
    _refused_before_sending(sandbox, item, before)


def test_no_move_to_another_currencys_invoice(sandbox, item, operator) -> None:
    euro = Invoice.objects.get(wisecp_id=EURO_INVOICE_ID)
    Invoice.objects.filter(pk=euro.pk).update(user_id=item.invoice.user_id)  # the same customer
    euro.refresh_from_db()

    with pytest.raises(ValidationError) as caught:
        push(item, operator, invoice=euro)

    assert caught.value.message_dict["invoice"] == [
        "Its invoice is in TRY, the target in EUR; items carry no currency."
    ]
    assert item_puts(sandbox) == []


def test_customer_names_decide_when_an_id_is_missing(sandbox, item, target_invoice) -> None:
    Invoice.objects.filter(pk=target_invoice.pk).update(user_id=None)
    target = Invoice.objects.get(pk=target_invoice.pk)
    assert pushes.same_customer(item.invoice, target)  # both "Merve Koç"
    target.full_name = "Başka Biri"
    assert not pushes.same_customer(item.invoice, target)
    target.full_name = ""
    assert not pushes.same_customer(item.invoice, target)


def test_money_change_on_a_closed_invoice_is_refused(sandbox, synced, operator) -> None:
    paid_item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=PAID_ITEM_ID)
    before = mirror_of(paid_item)

    for override in (False, True):  # without the permission, asking to override changes nothing
        with pytest.raises(InvoiceClosed) as caught:
            push(paid_item, operator, override=override, amount=Decimal("1.00"))
        assert isinstance(caught.value, PushConflict)
        assert "#306 is closed (Paid)" in str(caught.value)
        assert "Override" in str(caught.value)
    _refused_before_sending(sandbox, paid_item, before)

    # What moves no money is still allowed.
    push(paid_item, operator, description="Açıklama", reason="")
    assert len(item_puts(sandbox)) == 1


def test_a_move_into_a_closed_invoice_is_refused(sandbox, item, operator) -> None:
    paid = Invoice.objects.get(wisecp_id=PAID_SAME_CUSTOMER_ID)

    with pytest.raises(InvoiceClosed) as caught:
        push(item, operator, invoice=paid)

    assert "#354 is closed (Paid)" in str(caught.value)
    assert item_puts(sandbox) == []


def test_override_with_the_permission_and_a_reason_is_sent(sandbox, synced, operator) -> None:
    paid_item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=PAID_ITEM_ID)
    allowed = _with_override(operator)

    with pytest.raises(ValidationError) as caught:
        push(paid_item, allowed, override=True, reason="", amount=Decimal("350.00"))
    assert "reason" in caught.value.message_dict
    with pytest.raises(InvoiceClosed):
        push(paid_item, allowed, override=False, amount=Decimal("350.00"))

    updated = push(paid_item, allowed, override=True, reason="Fiyat hatası", amount=Decimal("350"))

    assert item_puts(sandbox)[0]["request"] == {"amount": 350.0, "total": 350.0}
    assert updated.total == Decimal("350.00")


def test_operators_do_not_get_the_override_by_default(operator, viewer) -> None:
    assert operator.has_perm("billing.push_invoiceitem")
    assert not operator.has_perm(pushes.PERM_OVERRIDE_CLOSED)
    assert not viewer.has_perm(pushes.PERM_OVERRIDE_CLOSED)


# The bulk path asks the same rules -----------------------------------------------------------


def _verdicts(preview) -> dict[int, tuple[str, str]]:
    return {row.item.wisecp_id: (row.kind.value, row.reason) for row in preview.rows}


def test_bulk_move_to_another_customers_invoice_is_blocked(sandbox, synced) -> None:
    items = InvoiceItem.objects.filter(wisecp_id__in=[1502, 1504, 1638, 1521])

    preview = invoice_item_bulk_preview(
        items=items, action="move", value=Invoice.objects.get(wisecp_id=TARGET_INVOICE_ID).pk
    )

    verdicts = _verdicts(preview)
    assert verdicts[1502] == ("change", "")
    assert verdicts[1504] == ("change", "")
    assert verdicts[1638][0] == "same"
    kind, reason = verdicts[1521]  # on #310, Burak Öztürk's
    assert kind == "blocked"
    assert "another customer's invoice" in reason


def test_bulk_move_to_another_currency_is_blocked(sandbox, synced) -> None:
    euro = Invoice.objects.get(wisecp_id=EURO_INVOICE_ID)
    items = InvoiceItem.objects.filter(wisecp_id=ITEM_ID)

    preview = invoice_item_bulk_preview(items=items, action="move", value=euro.pk)

    kind, reason = _verdicts(preview)[ITEM_ID]
    assert kind == "blocked"
    assert "Its invoice is in TRY, the target in EUR" in reason


def test_bulk_move_into_or_out_of_a_closed_invoice_is_blocked(sandbox, synced) -> None:
    items = InvoiceItem.objects.filter(wisecp_id__in=[ITEM_ID, 1622])  # 1622 sits on paid #354

    into_paid = invoice_item_bulk_preview(
        items=items, action="move", value=Invoice.objects.get(wisecp_id=PAID_SAME_CUSTOMER_ID).pk
    )
    assert _verdicts(into_paid)[ITEM_ID][0] == "blocked"
    assert "#354 is closed" in _verdicts(into_paid)[ITEM_ID][1]

    out_of_paid = invoice_item_bulk_preview(
        items=items, action="move", value=Invoice.objects.get(wisecp_id=TARGET_INVOICE_ID).pk
    )
    assert _verdicts(out_of_paid)[1622][0] == "blocked"
    assert _verdicts(out_of_paid)[ITEM_ID][0] == "change"

    # A due date moves no money: closed invoices do not block it.
    due = invoice_item_bulk_preview(items=items, action="due_date", value="2030-01-01 00:00:00")
    assert {kind for kind, _reason in _verdicts(due).values()} == {"change"}


def test_bulk_update_still_needs_a_reason(sandbox, synced, operator, target_invoice) -> None:
    # For a money change (a move), as on the single path; a renumber needs none (below).
    with pytest.raises(ValidationError) as caught:
        invoice_item_bulk_update(
            items=InvoiceItem.objects.filter(wisecp_id=ITEM_ID),
            action="move",
            value=target_invoice.pk,
            actor=operator,
            reason=" ",
        )
    assert "reason" in caught.value.message_dict
    assert not Job.objects.exists()


def test_a_bulk_renumber_needs_no_reason(sandbox, synced, operator, queued_tasks) -> None:
    InvoiceItem.objects.filter(wisecp_id=1504).update(sequence=5)  # #302 is now 1, 5

    job = invoice_item_bulk_update(
        items=InvoiceItem.objects.filter(wisecp_id=ITEM_ID),
        action="renumber",
        value=None,
        actor=operator,
        reason="",
    )

    assert (job.total, job.reason) == (1, "")


def test_a_bulk_job_skips_an_item_edited_since_the_preview(
    sandbox, synced, operator, queued_tasks
) -> None:
    a, b = InvoiceItem.objects.filter(due_date__isnull=False).order_by("wisecp_id")[:2]
    new_due = datetime(2031, 1, 31, 23, 59, 59, tzinfo=ISTANBUL)
    job = invoice_item_bulk_update(
        items=InvoiceItem.objects.filter(pk__in=[a.pk, b.pk]),
        action="due_date",
        value=new_due,
        actor=operator,
        reason="yeni vade",
    )
    # Someone saves item b in between: its version moves on.
    push(b, operator, description="Elle düzeltildi")

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert (job.succeeded, job.skipped, job.failed) == (1, 1, 0)
    skipped = job.items.get(outcome="skipped")
    assert skipped.target_id == str(b.pk) and "changed since the preview" in skipped.message
    puts = [p["item_id"] for p in item_puts(sandbox) if "due_date" in p["request"]]
    assert puts == [a.wisecp_id]  # b's stale due date was never sent
    assert InvoiceItem.objects.get(pk=b.pk).description == "Elle düzeltildi"


def test_a_bulk_move_is_skipped_when_its_invoice_was_paid_since_the_preview(
    sandbox, synced, operator, target_invoice, queued_tasks
) -> None:
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    job = invoice_item_bulk_update(
        items=InvoiceItem.objects.filter(pk=item.pk),
        action="move",
        value=target_invoice,
        actor=operator,
        reason="yanlış fatura",
    )
    # A refresh shows the source invoice paid before the job gets to it.
    Invoice.objects.filter(wisecp_id=SOURCE_INVOICE_ID).update(status="paid")

    bulk.run_job(job.pk)

    skipped = job.items.get()
    assert skipped.outcome == "skipped" and "Not sent" in skipped.message
    assert item_puts(sandbox) == []


def test_a_bulk_move_skipped_for_another_customer_names_them_masked(
    sandbox, synced, operator, target_invoice, queued_tasks
) -> None:
    # The skip reason is on the job's page, its exports and /api/jobs/, read by viewers too.
    from upstream.calls.redaction import mask_name

    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    job = invoice_item_bulk_update(
        items=InvoiceItem.objects.filter(pk=item.pk),
        action="move",
        value=target_invoice,
        actor=operator,
        reason="yanlış fatura",
    )
    # A refresh shows the target invoice under another customer before the job gets to it.
    Invoice.objects.filter(pk=target_invoice.pk).update(
        user_id=999, full_name="Zeynep Kaya", company_name=""
    )

    bulk.run_job(job.pk)

    skipped = job.items.get()
    assert skipped.outcome == "skipped" and "another customer" in skipped.message
    assert "Zeynep Kaya" not in skipped.message and mask_name("Zeynep Kaya") in skipped.message
    source = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)
    assert source.full_name not in skipped.message or source.company_name
