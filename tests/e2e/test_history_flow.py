"""A record's timeline and the drift report in a real browser (issue 9).

Staff pushed a payment record's status; Paynet's panel set it back behind the product's back
(the sandbox's tamper control); the next refresh found it. Staff read the record's timeline,
find the drift entry and re-push it; the job runs in a real `db_worker`.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status
from subscriptions.sync import paynet_sync, subscription_refresh
from upstream.models import Drift, UpstreamCall

from .conftest import log_in

pytestmark = pytest.mark.e2e

REASON = "Müşteri aboneliği iptal etti"


@pytest.fixture
def pushed_then_reverted(transactional_db, e2e_settings, operator) -> SubscriptionInvoice:
    paynet_sync()
    record = SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING).order_by("pk").first()
    subscription_invoice_set_status(
        record=record, status=InvoiceStatus.CANCEL, actor=operator, reason=REASON
    )
    e2e_settings.tamper(
        "paynet", invoice_no=record.invoice_no, fields={"status": int(InvoiceStatus.WAITING)}
    )
    subscription_refresh(record.subscription)
    record.refresh_from_db()
    assert record.status == InvoiceStatus.WAITING
    return record


def test_timeline_shows_the_push_and_the_upstream_change_then_the_drift_is_repushed(
    new_page, pushed_then_reverted, operator, task_worker, e2e_settings
):
    record = pushed_then_reverted
    call = UpstreamCall.objects.get(operation="invoice_status_update")
    page = new_page()
    log_in(page, operator.username)

    page.goto(f"/subscriptions/subscriptioninvoice/{record.pk}/change/")
    timeline = page.locator("#record-timeline")
    expect(timeline).to_be_visible()
    operation = timeline.locator("tr[data-kind=operation]")
    expect(operation).to_contain_text(REASON)
    expect(operation).to_contain_text("operator")
    expect(timeline.locator(f'tr[data-kind=call] a[href$="/upstreamcall/{call.pk}/change/"]'))
    # The push's own change and the one Paynet made, old → new, in Turkish.
    expect(timeline.locator("tr[data-kind=change]")).to_contain_text("Bekliyor → İptal edildi")
    expect(timeline.locator("tr[data-kind=sync]")).to_contain_text("İptal edildi → Bekliyor")
    expect(timeline.locator("tr[data-kind=drift_found]")).to_be_visible()
    # Newest first: the drift found by the refresh is above the operation.
    kinds = timeline.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert kinds.index("drift_found") < kinds.index("operation"), kinds

    page.goto("/upstream/drift/?state__exact=open")
    drift = Drift.objects.get()
    row = page.locator("#result_list tbody tr", has_text=record.invoice_no)
    expect(row).to_have_count(1)
    row.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", "repush_selected")
    page.click("div.actions button[name=index]")
    expect(page.locator("#drift-confirm")).to_be_visible()
    page.fill("#drift-confirm textarea[name=reason]", "Paynet panelinden yanlışlıkla geri alındı")
    page.click("#confirm-button")
    page.wait_for_url(re.compile(r"/upstream/drift/"))

    drift.refresh_from_db()
    assert drift.state == Drift.State.REPUSHED and drift.job is not None
    task_worker.assert_alive()
    page.goto(f"/upstream/job/{drift.job.pk}/change/")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    record.refresh_from_db()
    assert record.status == InvoiceStatus.CANCEL
    upstream = {r["invoice_no"]: r for r in e2e_settings.state("paynet")["records"]}
    assert upstream[record.invoice_no]["status"] == InvoiceStatus.CANCEL

    page.goto(f"/subscriptions/subscriptioninvoice/{record.pk}/change/")
    expect(page.locator("#record-timeline tr[data-kind=drift_resolved]")).to_be_visible()
