"""Paynet flows in a real browser: staff log in, push changes, watch the job and read the result.

The mirror is loaded from the sandbox over HTTP; bulk pushes run in a real `db_worker` process.
"""

from __future__ import annotations

import re
import shutil
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import translation
from playwright.sync_api import expect

from subscriptions.admin import SubscriptionInvoiceAdmin
from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.sync import paynet_sync
from upstream.models import Job

from .conftest import log_in

pytestmark = pytest.mark.e2e

INVOICES = "/subscriptions/subscriptioninvoice/"
SCREENSHOT_COPY = "/tmp/e2e-job.png"
# ₺ 1.234,56: a dot between thousands, a comma before the kuruş, a no-break space after ₺.
LIRA = re.compile(r"^₺\u00a0\d{1,3}(\.\d{3})*,\d{2}$")

# Records the progress bar's values inside the page, in sessionStorage, only when they change.
# A reload would drop the observer, so every value it records was set in place by the page's own
# polling; the values outlive the page's final reload, so the test reads them afterwards.
WATCH_BAR = """() => {
  const bar = document.getElementById("job-bar");
  const seen = [Number(bar.value)];
  sessionStorage.setItem("e2e-bar", JSON.stringify(seen));
  new MutationObserver(() => {
    const value = Number(bar.value);
    if (value !== seen[seen.length - 1]) {
      seen.push(value);
      sessionStorage.setItem("e2e-bar", JSON.stringify(seen));
    }
  }).observe(bar, { attributes: true, attributeFilter: ["value", "max"] });
  return { value: Number(bar.value), max: Number(bar.max) };
}"""


def lira(amount: Decimal) -> str:
    """How a Turkish finance clerk writes an amount, built here without the product's formatter."""
    whole, kurus = f"{amount:,.2f}".split(".")
    return f"₺\u00a0{whole.replace(',', '.')},{kurus}"


@pytest.fixture
def mirror(transactional_db, e2e_settings):
    paynet_sync()
    return e2e_settings


def waiting_records():
    return SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING)


def status_writes(sandbox) -> list[str]:
    return [e["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]


def open_change_status(page, *, across: int | None = None) -> None:
    """Waiting records on the changelist, all of the page (or all `across`), "Change status…"."""
    page.goto(INVOICES)
    page.click('#changelist-filter a[href*="status__exact=0"]')
    page.wait_for_url(re.compile(r"status__exact=0"))
    page.check("#action-toggle")
    if across is not None:
        select_all = page.locator("div.actions span.question a")
        expect(select_all).to_be_visible()
        expect(select_all).to_contain_text(str(across))
        select_all.click()
        expect(page.locator("div.actions span.all")).to_be_visible()
    page.select_option("select[name=action]", "change_status")
    page.click("div.actions button[name=index]")
    expect(page.locator("#status-confirm")).to_be_visible()


def preview_and_confirm(page, *, status: InvoiceStatus, reason: str) -> None:
    page.select_option("#status-confirm select[name=status]", str(int(status)))
    page.click("button[name=step][value=preview]")
    expect(page.locator("#count-change")).to_be_visible()
    page.fill("#status-confirm textarea[name=reason]", reason)
    page.click("#confirm-button")
    page.wait_for_url(re.compile(r"/upstream/job/\d+/change/"))


def test_turkish_by_default_with_lira_amounts(new_page, mirror, operator):
    page = new_page()
    page.goto("/")
    page.wait_for_url("**/login/**")
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    expect(page.locator("#login-form input[type=submit]")).to_have_value("Oturum aç")

    log_in(page, "operator")
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    expect(page.locator("#user-tools")).to_contain_text("Hoş Geldiniz,")
    expect(page.locator("#logout-form button")).to_have_text("Oturumu kapat")

    page.goto(INVOICES)
    amounts = page.locator("#result_list td.field-amount_display").all_inner_texts()
    assert amounts and all(LIRA.match(a.strip()) for a in amounts), amounts
    big = SubscriptionInvoice.objects.filter(amount__gte=1000).order_by("pk").first()
    page.goto(f"{INVOICES}?q={big.invoice_no}")
    expect(page.locator("#result_list td.field-amount_display")).to_have_text(lira(big.amount))

    # Even an English browser gets Turkish; English is the user's choice in the header.
    english = new_page(locale="en-US")
    english.goto("/")
    expect(english.locator("html")).to_have_attribute("lang", "tr")
    expect(english.locator("#login-form input[type=submit]")).to_have_value("Oturum aç")
    log_in(english, "operator")
    with english.expect_navigation():
        english.select_option("#language-switch select", "en")
    expect(english.locator("html")).to_have_attribute("lang", "en")
    expect(english.locator("#user-tools")).to_contain_text("Welcome,")
    english.goto(INVOICES)
    expect(english.locator("html")).to_have_attribute("lang", "en")


def test_bulk_status_change_shows_live_progress_and_pushes_each_record_once(
    new_page, mirror, operator, task_worker, tmp_path, settings
):
    # Under the approval thresholds: this test is about progress (test_approval_flow.py is not).
    settings.APPROVAL_MIN_ITEMS = 10_000
    settings.APPROVAL_MIN_AMOUNT = 10**9
    sandbox = mirror
    waiting = list(waiting_records().values_list("pk", flat=True))
    total = len(waiting)
    waiting_total = waiting_records().aggregate(s=Sum("amount"))["s"]
    assert total > 50, "needs more waiting records than one changelist page holds"
    sandbox.latency(30)

    page = new_page()
    log_in(page, "operator")
    open_change_status(page, across=total)
    expect(page.locator("#status-confirm")).to_contain_text(str(total))

    page.select_option("#status-confirm select[name=status]", str(int(InvoiceStatus.CANCEL)))
    page.click("button[name=step][value=preview]")
    expect(page.locator("#count-change")).to_have_text(str(total))
    expect(page.locator("#count-same")).to_have_text("0")
    expect(page.locator("#count-blocked")).to_have_text("0")
    expect(page.locator("#change-total")).to_have_text(lira(waiting_total))
    assert status_writes(sandbox) == [], "nothing is sent before the confirmation"

    page.fill("#status-confirm textarea[name=reason]", "Müşteri aboneliği iptal etti")
    loads = []
    page.on("load", lambda p: loads.append(p.url))
    page.click("#confirm-button")
    page.wait_for_url(re.compile(r"/upstream/job/\d+/change/"))
    start = page.evaluate(WATCH_BAR)
    job = Job.objects.get()
    assert start["max"] == total and job.total == total

    task_worker.assert_alive()
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(page.locator("#job-done")).to_have_text(str(total))
    expect(page.locator("#job-total")).to_have_text(str(total))
    expect(page.locator("#job-failed")).to_have_text("0")
    expect(page.locator("#job-bar")).to_have_attribute("value", str(total))

    seen = page.evaluate("() => JSON.parse(sessionStorage.getItem('e2e-bar') || '[]')")
    assert seen == sorted(seen), f"the bar went backwards: {seen}"
    assert seen[-1] == total, seen
    assert any(0 < v < total for v in seen), f"no value between start and end was shown: {seen}"
    assert len(seen) >= 3, f"the bar did not move step by step: {seen}"
    # The job page loaded once, then reloaded once when the job finished; the bar moved between.
    job_loads = [url for url in loads if f"/upstream/job/{job.pk}/change/" in url]
    assert len(job_loads) == 2, loads

    screenshot = tmp_path / "job.png"
    page.screenshot(path=str(screenshot), full_page=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.done == job.succeeded == total
    assert job.reason == "Müşteri aboneliği iptal etti"
    records = SubscriptionInvoice.objects.filter(pk__in=waiting)
    assert set(records.values_list("status", flat=True)) == {InvoiceStatus.CANCEL}
    writes = status_writes(sandbox)
    assert len(writes) == len(set(writes)) == total, "a record was pushed twice or not at all"
    assert set(writes) == set(records.values_list("invoice_no", flat=True))


def test_rejected_item_is_listed_and_retrying_it_finishes_the_job(
    new_page, mirror, operator, task_worker
):
    sandbox = mirror
    page_records = waiting_records().order_by("-val_date", "-pk")  # the changelist's first page
    refused = page_records.first()
    message = "Kayıt kilitli: ödeme işleniyor"
    sandbox.faults(
        {
            "kind": "reject",
            "service": "paynet",
            "operation": "invoice_status_update",
            "match": {"invoice_no": refused.invoice_no},
            "message": message,
        }
    )

    page = new_page()
    log_in(page, "operator")
    open_change_status(page)
    preview_and_confirm(page, status=InvoiceStatus.DONE_UNSUCCEED, reason="Kart reddedildi")

    expect(page.locator("#job-state")).to_have_attribute(
        "data-state", "partially_failed", timeout=60_000
    )
    job = Job.objects.get()
    assert job.total == 50, "the page's boxes only, not every waiting record"
    failures = page.locator("#job-failures tbody tr")
    expect(failures).to_have_count(1)
    expect(failures.first).to_contain_text(refused.invoice_no)
    expect(failures.first).to_contain_text(message)
    expect(page.locator("#job-failed")).to_have_text("1")
    refused.refresh_from_db()
    assert refused.status == InvoiceStatus.WAITING, "a refused record stays as it was"

    sandbox.faults()
    retry = page.locator("#job-retry")
    expect(retry).to_be_visible()
    retry.click()
    # Nothing happens before the confirmation page is answered.
    expect(page.locator("#job-confirm-question")).to_contain_text("1")
    page.click("#job-confirm-button")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(page.locator("#job-failed")).to_have_text("0")
    expect(page.locator("#job-done")).to_have_text(str(job.total))
    expect(page.locator("#job-failures")).to_have_count(0)

    refused.refresh_from_db()
    assert refused.status == InvoiceStatus.DONE_UNSUCCEED
    writes = status_writes(sandbox)
    assert writes.count(refused.invoice_no) == 1
    assert len(writes) == len(set(writes)) == job.total


def test_create_payment_record_previews_shows_the_refusal_then_creates_it(
    new_page, mirror, operator
):
    sandbox = mirror
    subscription = Subscription.objects.filter(is_fixed_price=False).order_by("pk").first()
    before = subscription.invoices.count()
    invoice_no = "95550001"
    message = "Abonelik askıya alınmış, ödeme kaydı eklenemez"

    page = new_page()
    log_in(page, "operator")
    page.goto(f"/subscriptions/subscription/{subscription.pk}/change/")
    page.click("#create-invoice-link")
    form = page.locator("#create-invoice-form")
    # The admin's date and time pickers are there (their scripts ran).
    expect(form.locator(".datetimeshortcuts").first).to_be_visible()
    form.locator("[name=val_date_0]").fill("15.12.2031")
    form.locator("[name=val_date_1]").fill("10:00")
    form.locator("[name=amount]").fill("1.234,56")
    form.locator("[name=invoice_no]").fill(invoice_no)
    form.locator("[name=reason]").fill("Aralık dönemi faturası")
    page.click("#create-invoice-submit")

    # Step 2: what was understood; nothing is sent yet.
    expect(page.locator("#preview-amount")).to_have_text(lira(Decimal("1234.56")))
    expect(page.locator("#preview-company-amount")).to_have_text(lira(Decimal("1234.56")))
    expect(page.locator("#preview-val-date")).to_have_text("15.12.2031 10:00")
    expect(page.locator("#preview-invoice-no")).to_have_text(invoice_no)
    assert sandbox.ledger("paynet", "create_invoice") == []

    sandbox.faults(
        {"kind": "reject", "service": "paynet", "operation": "create_invoice", "message": message}
    )
    page.click("#create-invoice-confirm")

    expect(page.locator("ul.messagelist li.error")).to_contain_text(message)
    assert subscription.invoices.count() == before, "nothing is saved when Paynet refuses"
    assert sandbox.ledger("paynet", "create_invoice") == []
    expect(form.locator("[name=amount]")).to_have_value("1.234,56")

    sandbox.faults()
    page.click("#create-invoice-submit")
    page.click("#create-invoice-confirm")
    page.wait_for_url(re.compile(r"/subscriptions/subscriptioninvoice/\d+/change/"))
    expect(page.locator("ul.messagelist li.success")).to_contain_text(invoice_no)
    expect(page.locator("body")).to_contain_text(invoice_no)

    record = subscription.invoices.get(invoice_no=invoice_no)
    assert record.amount == Decimal("1234.56")
    assert record.status == InvoiceStatus.WAITING
    created = sandbox.ledger("paynet", "create_invoice")
    assert [e["invoice_no"] for e in created] == [invoice_no]


def test_viewer_sees_payment_records_but_cannot_change_them(new_page, mirror, viewer):
    page = new_page()
    log_in(page, "viewer")
    page.goto(INVOICES)
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    actions = page.locator("select[name=action] option")
    values = actions.evaluate_all("options => options.map(o => o.value)")
    with translation.override("tr"):
        label = str(SubscriptionInvoiceAdmin.change_status.short_description)
    assert "change_status" not in values
    assert label not in [text.strip() for text in actions.all_inner_texts()]

    variable = Subscription.objects.filter(is_fixed_price=False).order_by("pk").first()
    page.goto(f"/subscriptions/subscription/{variable.pk}/change/")
    expect(page.locator("#content h1")).to_be_visible()
    expect(page.locator("#create-invoice-link")).to_have_count(0)
