"""WiseCP in a real browser: the item change form pushes; the mirror keeps what WiseCP answered."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from billing.models import InvoiceItem
from billing.sync import wisecp_sync

from .conftest import log_in

pytestmark = pytest.mark.e2e

# Seed 1 of the sandbox: item 1502 sits on invoice 302 (TRY, unpaid), as in tests/billing.
ITEM_ID = 1502


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


def test_editing_an_item_shows_a_refusal_then_saves_what_wisecp_answered(
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
    form = page.locator("#invoiceitem_form")
    form.locator("textarea[name=description]").fill(new_description)
    form.locator("input[name=_save]").click()

    expect(form.locator(".errornote")).to_be_visible()
    expect(form).to_contain_text(message)
    item.refresh_from_db()
    assert (item.description, item.version) == before, "nothing is saved when WiseCP refuses"
    assert sandbox.ledger("wisecp", "UpdateInvoiceItem") == []

    sandbox.faults()
    expect(form.locator("textarea[name=description]")).to_have_value(new_description)
    form.locator("input[name=_save]").click()
    page.wait_for_url("**/billing/invoiceitem/")
    expect(page.locator("ul.messagelist li.success").first).to_be_visible()

    [put] = sandbox.ledger("wisecp", "UpdateInvoiceItem")
    assert put["request"] == {"description": new_description}
    assert upstream_item(sandbox, ITEM_ID)["description"] == new_description
    item.refresh_from_db()
    assert (item.description, item.version) == (new_description, before[1] + 1)

    # The form shows the mirror as WiseCP left it.
    page.goto(f"/billing/invoiceitem/{item.pk}/change/")
    expect(form.locator("textarea[name=description]")).to_have_value(new_description)
    expect(form.locator("input[name=version]")).to_have_value(str(before[1] + 1))
