"""The operations dashboard and the environment banner in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status
from subscriptions.sync import paynet_sync

from .conftest import log_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def mirror(transactional_db, e2e_settings):
    paynet_sync()
    return e2e_settings


def test_the_index_draws_charts_and_every_page_shows_the_environment(new_page, mirror, operator):
    record = SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING).first()
    subscription_invoice_set_status(
        record=record, status=InvoiceStatus.CANCEL, actor=operator, reason="dashboard"
    )
    page = new_page()
    page.goto("/")
    page.wait_for_url("**/login/**")
    banner = page.locator("#env-banner .env-badge")
    expect(banner).to_have_count(3)
    expect(banner.first).to_have_attribute("data-mode", "sandbox")
    expect(page.locator("#env-banner")).to_contain_text("Paynet: TEST ORTAMI")

    log_in(page, "operator")
    paynet = page.locator("#chart-calls-paynet svg.chart")
    expect(paynet).to_be_visible()
    # The push's calls are drawn as bars, each with its value, and the p95 line is there.
    bars = page.locator("#chart-calls-paynet rect.bar[data-series=ok]")
    assert bars.count() >= 1
    drawn = sum(float(bars.nth(i).get_attribute("data-value")) for i in range(bars.count()))
    assert drawn >= 1
    expect(page.locator("#chart-calls-paynet polyline.line")).to_have_count(1)
    assert page.locator("#chart-records rect.bar").count() >= 3
    box = paynet.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 50
    expect(page.locator("#count-approval")).to_be_visible()
    page.goto("/subscriptions/subscriptioninvoice/")
    expect(page.locator("#env-banner .env-badge")).to_have_count(3)


def test_paynet_down_opens_the_breaker_on_the_dashboard_and_a_push_is_refused(
    new_page, mirror, operator, settings
):
    from upstream.calls.log import DbCallRecorder

    settings.BREAKER_FAILURES = 2  # the sync's attempts at its first request are enough
    # Paynet answers 503 to everything, as if it were down: the sync's calls fail in a row.
    mirror.faults({"kind": "status", "status": 503, "service": "paynet"})
    with pytest.raises(Exception):  # noqa: B017 - whichever upstream error the sync raises
        paynet_sync(recorder=DbCallRecorder())

    page = new_page()
    log_in(page, "operator")
    card = page.locator("#health-paynet")
    expect(card).to_have_attribute("data-breaker", "open")
    expect(page.locator("#health-wisecp")).to_have_attribute("data-breaker", "closed")

    record = SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING).first()
    page.goto(f"/subscriptions/subscriptioninvoice/{record.pk}/change-status/")
    page.select_option("select[name=status]", str(int(InvoiceStatus.CANCEL)))
    page.fill("textarea[name=reason]", "kesinti testi")
    page.click("#preview-button")
    page.click("#confirm-button")
    expect(page.locator(".messagelist .error")).to_contain_text("devre kesici açık")
    assert mirror.ledger("paynet", "invoice_status_update") == []
    record.refresh_from_db()
    assert record.status == InvoiceStatus.WAITING
