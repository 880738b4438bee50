"""REST API for WiseCP invoices and items (shared/INTERFACES.md)."""

from __future__ import annotations

from django.contrib.auth.models import Permission

from billing.models import Invoice, InvoiceItem
from upstream.models import UpstreamCall

from .conftest import (
    ITEM_ID,
    PAID_ITEM_ID,
    SOURCE_INVOICE_ID,
    item_puts,
    mirror_of,
    upstream_item,
)


def test_invoices_list_and_filters(api_viewer, synced) -> None:
    response = api_viewer.get("/api/invoices/", {"wisecp_id": SOURCE_INVOICE_ID})
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["number"] == "#302"
    assert row["item_count"] == 2
    for name in ("id", "wisecp_id", "status", "currency", "subtotal", "tax", "total", "due_date"):
        assert name in row
    assert row["total"] == str(Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID).total)

    paid = api_viewer.get("/api/invoices/", {"status": "paid", "page_size": 500}).json()
    assert paid["count"] == Invoice.objects.filter(status="paid").count()
    assert {r["status"] for r in paid["results"]} == {"paid"}


def test_items_list_and_filters(api_viewer, item) -> None:
    by_invoice = api_viewer.get("/api/invoice-items/", {"invoice": item.invoice_id}).json()
    assert {r["wisecp_id"] for r in by_invoice["results"]} == {1502, 1504}

    [row] = api_viewer.get("/api/invoice-items/", {"wisecp_id": ITEM_ID}).json()["results"]
    for name in (
        "id",
        "wisecp_id",
        "invoice",
        "sequence",
        "description",
        "quantity",
        "tax_exempt",
        "amount",
        "total",
        "order_id",
        "due_date",
        "attributes",
        "version",
    ):
        assert name in row
    assert row["invoice"] == item.invoice_id
    assert api_viewer.get(f"/api/invoice-items/{item.pk}/").json()["wisecp_id"] == ITEM_ID


def test_patch_pushes_and_returns_the_item_as_wisecp_returned_it(
    api_operator, sandbox, item
) -> None:
    response = api_operator.patch(
        f"/api/invoice-items/{item.pk}/",
        {"description": "API ile değişti", "due_date": "2025-04-30T23:59:59+03:00", "version": 1},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["description"] == "API ile değişti"
    assert body["version"] == 2
    [put] = item_puts(sandbox)
    assert put["request"] == {"description": "API ile değişti", "due_date": "2025-04-30 23:59:59"}
    assert upstream_item(sandbox, ITEM_ID)["description"] == "API ile değişti"


def test_patch_moves_with_the_invoice_field(api_operator, sandbox, item, target_invoice) -> None:
    response = api_operator.patch(
        f"/api/invoice-items/{item.pk}/",
        {"invoice": target_invoice.pk, "reason": "Aynı müşterinin faturasında birleştir"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["invoice"] == target_invoice.pk
    assert item_puts(sandbox)[0]["request"] == {"owner_id": target_invoice.wisecp_id}


def test_patch_bad_input_is_400(api_operator, sandbox, item) -> None:
    url = f"/api/invoice-items/{item.pk}/"
    before = mirror_of(item)
    for body in (
        {"quantity": 0},
        {"amount": "1.234"},
        {"due_date": "yarın"},
        {"invoice": 999_999},
        {"wisecp_id": 5},
        {},
        {"attributes": "x"},
    ):
        response = api_operator.patch(url, body, format="json")
        assert response.status_code == 400, body
        assert "detail" in response.json()
    assert item_puts(sandbox) == []
    assert mirror_of(item) == before


def test_patch_by_a_viewer_is_403(api_viewer, sandbox, item) -> None:
    response = api_viewer.patch(
        f"/api/invoice-items/{item.pk}/", {"description": "x"}, format="json"
    )
    assert response.status_code == 403
    assert "detail" in response.json()
    assert item_puts(sandbox) == []


def test_patch_with_a_stale_version_is_409(api_operator, sandbox, item) -> None:
    url = f"/api/invoice-items/{item.pk}/"
    assert api_operator.patch(url, {"sequence": 5, "version": 1}, format="json").status_code == 200

    response = api_operator.patch(url, {"sequence": 6, "version": 1}, format="json")

    assert response.status_code == 409
    assert "changed since you opened it" in response.json()["detail"]
    assert len(item_puts(sandbox)) == 1
    assert InvoiceItem.objects.get(pk=item.pk).sequence == 5


def test_patch_refused_by_wisecp_is_502_with_the_call(api_operator, sandbox, item) -> None:
    sandbox.faults(
        {
            "kind": "reject",
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
            "message": "Kalem kilitli",
        }
    )
    before = mirror_of(item)

    response = api_operator.patch(
        f"/api/invoice-items/{item.pk}/", {"description": "x"}, format="json"
    )

    assert response.status_code == 502
    body = response.json()
    assert "Kalem kilitli" in body["detail"]
    assert body["upstream_message"] == "Kalem kilitli"
    assert body["outcome"] == "rejected"
    assert body["call_id"] == UpstreamCall.objects.get(operation="UpdateInvoiceItem").pk
    assert "WiseCP holds invoice" in body["detail"]  # read back at once
    assert mirror_of(item) == before


def test_put_and_delete_are_not_offered(api_operator, sandbox, item) -> None:
    url = f"/api/invoice-items/{item.pk}/"
    # Refused by the model permissions (operators have none to change rows locally) or the verb.
    assert api_operator.put(url, {"description": "x"}, format="json").status_code in (403, 405)
    assert api_operator.delete(url).status_code in (403, 405)
    assert InvoiceItem.objects.filter(pk=item.pk).exists()
    assert item_puts(sandbox) == []


# The rules (billing/pushes.py) ---------------------------------------------------------------


def test_patch_money_without_a_reason_is_400(api_operator, sandbox, item) -> None:
    url = f"/api/invoice-items/{item.pk}/"
    before = mirror_of(item)

    for body in ({"amount": "100.00"}, {"quantity": 2}, {"tax_exempt": True}, {"total": "1"}):
        response = api_operator.patch(url, body, format="json")
        assert response.status_code == 400, body
        assert "reason" in response.json()
        assert "Give a reason" in response.json()["detail"]
    assert item_puts(sandbox) == []
    assert mirror_of(item) == before


def test_patch_with_a_reason_sends_quantity_times_unit_price(api_operator, sandbox, item):
    response = api_operator.patch(
        f"/api/invoice-items/{item.pk}/",
        {"quantity": 2, "amount": "120.00", "reason": "Fiyat düzeltmesi"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["total"], response.json()["quantity"]) == ("240.00", 2)
    assert item_puts(sandbox)[0]["request"] == {"quantity": 2, "amount": 120.0, "total": 240.0}


def test_patch_move_to_another_customers_invoice_is_400(api_operator, sandbox, item) -> None:
    other = Invoice.objects.get(wisecp_id=310)
    response = api_operator.patch(
        f"/api/invoice-items/{item.pk}/", {"invoice": other.pk, "reason": "x"}, format="json"
    )

    assert response.status_code == 400
    assert "another customer's invoice" in response.json()["invoice"][0]
    assert item_puts(sandbox) == []


def test_patch_money_of_a_closed_invoice_is_409_unless_overridden(
    api_operator, operator, sandbox, synced
) -> None:
    paid_item = InvoiceItem.objects.get(wisecp_id=PAID_ITEM_ID)
    url = f"/api/invoice-items/{paid_item.pk}/"
    body = {"amount": "350.00", "reason": "İade sonrası düzeltme"}

    refused = api_operator.patch(url, body, format="json")
    assert refused.status_code == 409
    assert "closed" in refused.json()["detail"]
    no_permission = api_operator.patch(url, {**body, "override": True}, format="json")
    assert no_permission.status_code == 409
    assert item_puts(sandbox) == []

    operator.user_permissions.add(
        Permission.objects.get(
            codename="override_closed_invoice", content_type__app_label="billing"
        )
    )
    api_operator.force_authenticate(type(operator).objects.get(pk=operator.pk))
    assert api_operator.patch(url, body, format="json").status_code == 409  # no override asked
    allowed = api_operator.patch(url, {**body, "override": True}, format="json")

    assert allowed.status_code == 200, allowed.json()
    assert allowed.json()["total"] == "350.00"
    assert item_puts(sandbox)[0]["request"] == {"amount": 350.0, "total": 350.0}
