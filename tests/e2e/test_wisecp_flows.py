"""WiseCP in a real browser: the item page is the mirror; "Edit at WiseCP…" previews the change,
then sends it on confirmation; the mirror keeps what WiseCP answered."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from billing.models import InvoiceItem
from billing.sync import wisecp_sync

from .conftest import log_in

pytestmark = pytest.mark.e2e

# Seed 1 of the sandbox: item 1502 sits on invoice 302 (TRY, unpaid), as in tests/billing;
# invoice 358 is the same customer's, also TRY and unpaid.
ITEM_ID = 1502
TARGET_NUMBER = "#358"


def upstream_item(sandbox, item_id: int) -> dict:
    for invoice in sandbox.state("wisecp")["invoices"]:
        for entry in invoice["items"]:
            if entry["id"] == item_id:
                return entry
    raise LookupError(item_id)


@pytest.fixture
def item(transactional_db, e2e_settings) -> InvoiceItem:
    wisecp_sync()
    return InvoiceItem.objects.get(wisecp_id=ITEM_ID)


def test_editing_an_item_previews_shows_a_refusal_then_saves_what_wisecp_answered(
    new_page, e2e_settings, item, operator
):
    sandbox = e2e_settings
    before = (item.description, item.version)
    new_description = "Kurumsal hosting paketi — Kasım dönemi"
    message = "Bu fatura kilitli"
    sandbox.faults(
        {
            "kind": "reject",
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
            "message": message,
        }
    )

    page = new_page()
    log_in(page, "operator")
    page.goto(f"/billing/invoiceitem/{item.pk}/change/")
    expect(page.locator("input[name=_save]")).to_have_count(0)  # the page is the mirror
    page.locator("#edit-at-wisecp").click()
    page.wait_for_url(f"**/billing/invoiceitem/{item.pk}/edit-at-wisecp/")

    form = page.locator("#item-edit-form")
    form.locator("textarea[name=description]").fill(new_description)
    form.locator("input[name=quantity]").fill("2")
    form.locator("input[name=amount]").fill("1.250,50")  # Turkish, as staff type it
    form.locator("textarea[name=reason]").fill("Fiyat güncellemesi")
    form.locator("#preview-button").click()

    confirm = page.locator("#item-confirm-form")
    changes = confirm.locator("#item-changes")
    expect(changes.locator("tr[data-field=quantity] td.new")).to_have_text("2")
    expect(changes.locator("tr[data-field=amount] td.new")).to_contain_text("1.250,50")
    expect(changes.locator("tr[data-field=total] td.new")).to_contain_text("2.501,00")
    expect(confirm.locator("#line-total")).to_contain_text("2.501,00")
    assert sandbox.ledger("wisecp", "UpdateInvoiceItem") == [], "nothing is sent before confirming"

    confirm.locator("#confirm-button").click()
    expect(page.locator("ul.messagelist li.error")).to_contain_text(message)
    item.refresh_from_db()
    assert (item.description, item.version) == before, "nothing is saved when WiseCP refuses"
    assert sandbox.ledger("wisecp", "UpdateInvoiceItem") == []

    sandbox.faults()
    form = page.locator("#item-edit-form")
    expect(form.locator("textarea[name=description]")).to_have_value(new_description)
    form.locator("#preview-button").click()
    page.locator("#item-confirm-form #confirm-button").click()
    page.wait_for_url(f"**/billing/invoiceitem/{item.pk}/change/")
    expect(page.locator("ul.messagelist li.success").first).to_be_visible()

    [put] = sandbox.ledger("wisecp", "UpdateInvoiceItem")
    assert put["request"] == {
        "description": new_description,
        "quantity": 2,
        "amount": 1250.5,
        "total": 2501.0,
    }
    assert upstream_item(sandbox, ITEM_ID)["total"] == 2501
    item.refresh_from_db()
    assert (item.description, item.version) == (new_description, before[1] + 1)
    expect(page.locator(".field-description")).to_contain_text(new_description)


def test_moving_an_item_picks_the_invoice_by_number(new_page, e2e_settings, item, operator):
    sandbox = e2e_settings
    page = new_page()
    log_in(page, "operator")
    page.goto(f"/billing/invoiceitem/{item.pk}/edit-at-wisecp/")

    # The admin's autocomplete (select2): type the number, pick the invoice.
    page.locator(".field-invoice .select2-selection").click()
    page.locator(".select2-search__field").fill(TARGET_NUMBER)
    page.locator(".select2-results__option", has_text=TARGET_NUMBER).click()
    page.locator("textarea[name=reason]").fill("Aynı müşterinin faturasında birleştir")
    page.locator("#preview-button").click()

    totals = page.locator("table.invoice-totals")
    expect(totals).to_have_count(2)  # the source invoice and the target
    assert sandbox.ledger("wisecp", "UpdateInvoiceItem") == []
    page.locator("#confirm-button").click()
    page.wait_for_url(f"**/billing/invoiceitem/{item.pk}/change/")

    [put] = sandbox.ledger("wisecp", "UpdateInvoiceItem")
    assert put["request"] == {"owner_id": 358}
    item.refresh_from_db()
    assert item.invoice.wisecp_id == 358
