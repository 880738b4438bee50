"""Payofin in a real browser: paste bill query lines, check, confirm, watch the batch finish."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from billqueries.models import BillQueryBatch
from billqueries.sync import payofin_sync

from .conftest import log_in

pytestmark = pytest.mark.e2e

ADD = "/billqueries/billquerybatch/add/"
# Seed 1 of the sandbox (as in tests/billqueries): two İSKİ numbers owe ₺ 560,00 and ₺ 57,00,
# one owes nothing, and the last line names no institution at all.
LINES = "iski;01345677000\n1;1345600\n1;0134569000\nNowhere;1234567\n"


@pytest.fixture
def institutions(transactional_db, e2e_settings) -> None:
    payofin_sync()


def test_pasted_lines_are_checked_then_queried_and_the_batch_page_shows_the_debts(
    new_page, e2e_settings, institutions, operator, task_worker
):
    sandbox = e2e_settings
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, "operator")
    page.goto(ADD)

    # A real paste, so the page's own script records the lines as pasted.
    page.evaluate("text => navigator.clipboard.writeText(text)", LINES)
    page.locator("#id_text").focus()
    page.keyboard.press("Control+V")
    expect(page.locator("#id_text")).to_have_value(LINES)
    page.click("#preview-button")

    expect(page.locator("#valid-count")).to_have_text("3")
    expect(page.locator("#invalid-count")).to_have_text("1")
    expect(page.locator("#invalid-lines tbody tr")).to_have_count(1)
    expect(page.locator("#invalid-lines")).to_contain_text("Nowhere;1234567")
    assert sandbox.ledger("payofin") == [], "nothing is sent before the confirmation"

    page.click("#confirm-button")
    page.wait_for_url("**/billqueries/billquerybatch/*/change/")
    task_worker.assert_alive()
    expect(page.locator("#bq-state")).to_have_attribute("data-state", "finished", timeout=60_000)
    expect(page.locator("#bq-done")).to_have_text("3")
    expect(page.locator("#bq-found")).to_have_text("2")
    expect(page.locator("#bq-no-debt")).to_have_text("1")
    expect(page.locator("#bq-failed")).to_have_text("0")
    expect(page.locator("#bq-total")).to_have_text("₺\u00a0617,00")
    expect(page.locator("#batch-lines > tbody > tr")).to_have_count(3)
    expect(page.locator("#line-1 .bq-debts")).to_be_visible()

    batch = BillQueryBatch.objects.get()
    assert batch.state == BillQueryBatch.State.FINISHED
    assert batch.source == BillQueryBatch.Source.PASTED
    assert batch.created_by.username == "operator"
    assert len(sandbox.ledger("payofin", "multipleinvoicequery")) == 1
