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
