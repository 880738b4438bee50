"""Four-eyes approval in a real browser: an operator's large push waits, a second person
approves it on the job page, and the real worker sends it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from subscriptions.models import InvoiceStatus, SubscriptionInvoice
from subscriptions.sync import paynet_sync
from upstream.models import Job

from .conftest import log_in
from .test_paynet_flows import open_change_status, status_writes

pytestmark = pytest.mark.e2e


@pytest.fixture
def mirror(transactional_db, e2e_settings):
    paynet_sync()
    return e2e_settings


def test_a_large_push_waits_for_a_second_person_then_runs(
    new_page,
    mirror,
    operator,
    approver,
    task_worker,
    settings,
):
    settings.APPROVAL_MIN_ITEMS = 20
    waiting = SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)
    total = waiting.count()
    assert total >= 20

    page = new_page()
    log_in(page, "operator")
    open_change_status(page, across=total)
    page.select_option("#status-confirm select[name=status]", str(int(InvoiceStatus.CANCEL)))
    page.click("button[name=step][value=preview]")
    expect(page.locator("#count-change")).to_have_text(str(total))
    page.fill("#status-confirm textarea[name=reason]", "Dönem sonu temizliği")
    page.click("#confirm-button")
    page.wait_for_url(re.compile(r"/upstream/job/\d+/change/"))

    panel = page.locator("#job-approval")
    expect(panel).to_be_visible()
    expect(page.locator("#job-state")).to_have_attribute("data-state", "awaiting_approval")
    expect(page.locator("#approve-button")).to_have_count(0)  # not for the one who started it
    expect(panel).to_contain_text("başka bir kişinin onaylaması gerekir")
    job = Job.objects.get()
    assert job.state == "awaiting_approval" and status_writes(mirror) == []

    second = new_page()
    log_in(second, "approver")
    second.goto("/upstream/job/?approval=mine")
    second.click(f'#result_list a[href*="/upstream/job/{job.pk}/change/"]')
    expect(second.locator("#approval-count")).to_have_text(str(total))
    expect(second.locator("#job-approval")).to_contain_text("Dönem sonu temizliği")
    expect(second.locator("#approval-sample tbody tr")).to_have_count(min(total, 50))
    second.click("#approve-button")

    expect(second.locator("#job-state")).to_have_attribute(
        "data-state", "succeeded", timeout=60_000
    )
    expect(second.locator("#approval-decided-by")).to_contain_text("approver")
    job.refresh_from_db()
    assert job.succeeded == total and job.decided_by == approver
    writes = status_writes(mirror)
    assert len(writes) == len(set(writes)) == total
