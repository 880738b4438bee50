"""Every admin page at 1366 px, in Turkish and in English, as a new user would see it.

On each page: no sideways scroll in the lists, no text of the other language in the page's own
words (headings, labels, buttons, filters: the records' data may be in any language), no dotless
capital I where Turkish means İ, and Turkish pages write ₺ 1.234,56 and dd.mm.yyyy. The main
pages' screenshots go to docs/screenshots/ (the README shows them) when UPDATE_SCREENSHOTS=1,
else to a temporary folder, so an ordinary test run leaves the working tree clean.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_noop

from billing.models import Invoice, InvoiceItem
from billing.services import invoice_item_update, invoice_refresh_start
from billing.sync import wisecp_sync
from billqueries.models import BillQueryBatch
from billqueries.services import bill_query_batch_create
from billqueries.sync import payofin_sync
from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.pushes import INVOICE_STATUS_KIND
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
    subscription_refresh_start,
)
from subscriptions.sync import paynet_sync
from upstream.calls.breaker import breaker_trip
from upstream.calls.client import operation_catalogue
from upstream.calls.errors import AwaitingApproval
from upstream.groups import OPERATORS, VIEWERS
from upstream.history.sync_job import sync_start
from upstream.l10n.stored import text, to_json
from upstream.models import Drift, Job, JobItem
from upstream.pushes import bulk

from .conftest import PASSWORD, log_in

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "backoffice-screenshots"
)
WIDTH, HEIGHT = 1366, 768

# The page's own words: what the product writes, not the records it shows.
CHROME = (
    "#header, .breadcrumbs, h1, h2, h3, #nav-sidebar, thead th, label, legend, summary, "
    ".submit-row, .object-tools, .paginator, .messagelist, .help, .job-meta, .job-counts th, "
    "#changelist-search, #changelist-filter, .actions, .dash-counts, .health-card dt, "
    ".chart-legend, .env-banner, #forbidden, .module caption"
)
# Words only a Turkish page writes, and words only an English one does.
TURKISH_WORDS = re.compile(
    r"\b(Ana sayfa|Filtrele|Eylem|Göstermek için|Oturumu kapat|Tümü|Kaydet|Evet|Hayır|İşler|"
    r"Ödeme kayıtları|Fatura kalemleri|Servis çağrıları|gönderildi|değiştirildi|satır|"
    r"sorguları|Başlık|Durum|Oluşturulma|Gerekçe|İlerleme|Sonuç|Tutar|Toplam|Süre|Başarısız|"
    r"Başarılı|Belirsiz|İptal|Yenile\w*|yenile\w*|Sapma|sapma|abonelik\w*|fatura\w*|kaydı)\b"
)
ENGLISH_WORDS = re.compile(
    r"\b(Home|Filter|Action|Search|Save|Log out|Yes|failed|Status|Amount|Total|Description|"
    r"Quantity|Invoices?|Jobs?|Cancel(led)?|Retry|Select|View|Change|Add|Task|Outcome|"
    r"Created|Reason|Progress|Duration|exclusive|in_doubt|could not|Upstream|Access|Finance|"
    r"Refresh|refresh|Drift|found)\b"
)
# A code where a name belongs: a job kind ("paynet.refresh"), a model ("subscriptions.
# subscriptioninvoice").
RAW_CODE = re.compile(
    r"\b(paynet|wisecp|payofin|subscriptions|billing|billqueries|upstream)\.[a-z_]+\b"
    r"|\b(paynet|wisecp|payofin) ·"  # a service by its code ("paynet · invoice_list")
)
SNAKE_CODE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
# A Turkish word whose first letter is İ, written with a dotless capital I. Not a masked name:
# "Iş**" is a customer called Işık (a sync's calls name every subscription).
DOTLESS_I = re.compile(
    r"\b(I[sş]|I[sş]ler|Işlem\w*|Istek\w*|Iade\w*|Ilerleme|Izin\w*|Iptal\w*|Indir\w*|"
    r"Ileri\w*|Ilk|Isim|Iletişim|Ilgili|Içerik|I[ŞŞĞÇ][A-ZŞĞÇÖÜİ]+)\b(?!\*)"
)
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
DAY = re.compile(r"\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b")
TR_MONEY = re.compile(r"^-?[₺$€£]\u00a0-?\d{1,3}(\.\d{3})*,\d{2}$")
EN_MONEY = re.compile(r"^-?[₺$€£]\u00a0-?\d{1,3}(,\d{3})*\.\d{2}$")
# django_tasks_db's own pages: a library's admin, its field labels are English only.
# django-axes names its records in English ("Access Log for boss @ …"), in the breadcrumbs.
NOT_OURS = ("/django_tasks_database/", "/axes/accesslog/", "/axes/accessattempt/")

MEASURE = """() => {
  const doc = document.documentElement;
  const results = document.querySelector('#changelist .results');
  const chrome = Array.from(document.querySelectorAll(arguments_chrome))
    .map(e => e.innerText).join('\\n');
  const cells = Array.from(document.querySelectorAll('td, .readonly'))
    .filter(e => !e.querySelector('pre')).map(e => e.innerText);
  const money = Array.from(document.querySelectorAll('.money:not(th)')).map(e => e.innerText.trim())
    .filter(t => t);
  return {
    lang: doc.lang,
    page: [doc.scrollWidth, doc.clientWidth],
    results: results ? [results.scrollWidth, results.clientWidth] : null,
    chrome, cells, money, text: document.body.innerText,
  };
}"""


@pytest.fixture
def world(transactional_db, e2e_settings, settings):
    """Every kind of page has something to show: the three mirrors, jobs of each outcome."""
    # Set-up work runs in this process, right away; the pages only read.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    paynet_sync()
    wisecp_sync()
    payofin_sync()
    user = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    record = SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING).first()
    subscription_invoice_set_status(
        record=record, status=InvoiceStatus.CANCEL, actor=user, reason="Müşteri istedi"
    )
    batch = bill_query_batch_create(
        lines=[
            {"soot_code": 1, "subscriber_no": "01345677000", "number": 2},
            {"soot_code": 1, "subscriber_no": "1345600", "number": 5},
        ],
        actor=user,
        source="xlsx",
        filename="2025-aralik-elektrik-su-dogalgaz-toplu-sorgu-listesi.xlsx",
    )
    # Totals as big as a real month's: the list must still fit 1366 px.
    BillQueryBatch.objects.filter(pk=batch.pk).update(
        debt_total=Decimal("12345678.90"), fee_total=Decimal("98765.43")
    )
    # Drift of each kind, and refresh jobs started by a Turkish reader (read in each language).
    items = InvoiceItem.objects.order_by("pk")[:2]
    drifts = ((Drift.Kind.REVERTED, "7.00"), (Drift.Kind.OUTSIDE_CHANGE, "1234567.89"))
    for item, (kind, found) in zip(items, drifts, strict=True):
        Drift.objects.create(
            service="wisecp",
            content_type=ContentType.objects.get_for_model(InvoiceItem),
            object_id=item.pk,
            record_label=str(item),
            field="amount",
            expected="1234567.00",
            found=found,
            kind=kind,
            first_seen_at=timezone.now(),
            last_seen_at=timezone.now(),
        )
    with translation.override("tr"):
        subscription_refresh_start(
            subscriptions=Subscription.objects.filter(
                pk__in=list(Subscription.objects.values_list("pk", flat=True)[:3])
            ),
            actor=user,
        )
        invoice_refresh_start(
            invoices=Invoice.objects.filter(
                pk__in=list(Invoice.objects.values_list("pk", flat=True)[:3])
            ),
            actor=user,
        )
    # A sync job (issue 18): one record changed at Paynet, one gone; the dashboard's mirror age.
    first = SubscriptionInvoice.objects.order_by("pk").first()
    records = list(first.subscription.invoices.order_by("pk")[:2])
    e2e_settings.tamper("paynet", invoice_no=records[0].invoice_no, fields={"amount": 12345})
    e2e_settings.tamper("paynet", invoice_no=records[1].invoice_no, delete=True)
    with translation.override("tr"):
        synced, _created = sync_start("paynet", actor=user, enqueue=False)
    bulk.run_job(synced.pk)
    # A job cancelled after 3 of 10 records: its page must not look complete.
    with translation.override("tr"):
        title = text(
            gettext_noop("Set %(count)s payment records to “%(status)s”"),
            count=10,
            status=InvoiceStatus.CANCEL.label,
        )
    cancelled = Job.objects.create(
        kind=INVOICE_STATUS_KIND,
        title=title,
        title_text=to_json(title),
        state=Job.State.CANCELLED,
        total=10,
        succeeded=3,
        cancelled=7,
        created_by=user,
        cancelled_by=user,
        finished_at=timezone.now(),
    )
    for n in range(10):
        JobItem.objects.create(
            job=cancelled,
            position=n + 1,
            target_type="subscriptions.subscriptioninvoice",
            target_id=str(record.pk),
            target_repr=record.invoice_no,
            state=JobItem.State.DONE,
            outcome=JobItem.Outcome.OK if n < 3 else JobItem.Outcome.CANCELLED,
            finished_at=timezone.now() - timedelta(minutes=1),
        )
    # A push over the approval threshold, started by an operator: it waits for "boss".
    settings.APPROVAL_MIN_ITEMS = 3
    operator = get_user_model().objects.create_user("ayse", password=PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get(name=OPERATORS))
    awaiting = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(status=InvoiceStatus.WAITING),
        status=InvoiceStatus.CANCEL,
        actor=operator,
        reason="Müşteriler sözleşmeyi feshetti",
    )
    assert awaiting.state == Job.State.AWAITING_APPROVAL
    viewer = get_user_model().objects.create_user("veli", password=PASSWORD, is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWERS))
    # A WiseCP item edit over the amount threshold waits too: its page plans the item's change.
    settings.APPROVAL_MIN_AMOUNT = Decimal("0.01")
    edited = InvoiceItem.objects.filter(invoice__status="unpaid").order_by("-pk").first()
    with pytest.raises(AwaitingApproval) as waiting:
        invoice_item_update(
            item=edited,
            changes={"description": "Hosting 2026"},
            expected_version=edited.version,
            actor=operator,
            reason="Yeni dönem",
        )
    settings.APPROVAL_MIN_AMOUNT = Decimal("1000000")
    # A job held back by Paynet's breaker, one of its items in doubt.
    with translation.override("tr"):
        paused_title = text(
            gettext_noop("Set %(count)s payment records to “%(status)s”"),
            count=2,
            status=InvoiceStatus.CANCEL.label,
        )
    paused = Job.objects.create(
        kind=INVOICE_STATUS_KIND,
        title=paused_title,
        title_text=to_json(paused_title),
        state=Job.State.RUNNING,
        total=2,
        created_by=user,
    )
    for n, other in enumerate(SubscriptionInvoice.objects.order_by("pk")[:2]):
        JobItem.objects.create(
            job=paused,
            position=n + 1,
            target_type="subscriptions.subscriptioninvoice",
            target_id=str(other.pk),
            target_repr=other.invoice_no,
            in_doubt=n == 0,
        )
    breaker_trip("paynet")
    return {
        "user": user,
        "cancelled": cancelled,
        "record": record,
        "awaiting": awaiting,
        "synced": synced,
        "paused": paused,
        "item_awaiting": waiting.value.job,
    }


def _pages(world) -> dict[str, str]:
    """Every list and one record's page of each, the confirmation pages, jobs and dashboard."""
    pages = {"dashboard": reverse("admin:index")}
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        name = "{}-{}".format(*info)
        pages[name] = reverse("admin:{}_{}_changelist".format(*info))
        obj = model._default_manager.order_by("-pk").first()
        if obj is not None:
            pages[f"{name}-detail"] = reverse("admin:{}_{}_change".format(*info), args=[obj.pk])
    variable = Subscription.objects.filter(is_fixed_price=False).first()
    item = InvoiceItem.objects.order_by("pk").first()
    job = world["cancelled"]
    extra = {
        "record-change-status": (
            "admin:subscriptions_subscriptioninvoice_change_status",
            world["record"].pk,
        ),
        "create-payment-record": ("admin:subscriptions_subscription_create_invoice", variable.pk),
        "item-edit": ("admin:billing_invoiceitem_edit", item.pk),
        "job-cancelled": ("admin:upstream_job_change", job.pk),
        "job-awaiting-approval": ("admin:upstream_job_change", world["awaiting"].pk),
        "job-paused": ("admin:upstream_job_change", world["paused"].pk),
        "job-item-awaiting-approval": ("admin:upstream_job_change", world["item_awaiting"].pk),
        "job-sync": ("admin:upstream_job_change", world["synced"].pk),
        "job-retry-confirm": ("admin:upstream_job_retry", job.pk),
        "job-resume-confirm": ("admin:upstream_job_resume", job.pk),
        "batch-add": ("admin:billqueries_billquerybatch_add", None),
    }
    for name, (url_name, pk) in extra.items():
        try:
            pages[name] = reverse(url_name, args=[pk] if pk is not None else [])
        except NoReverseMatch:
            pytest.fail(f"no page {url_name}")
    return pages


def _check(page, url: str, language: str) -> dict:
    found = page.evaluate(MEASURE.replace("arguments_chrome", repr(CHROME)))
    where = f"{language} {url}"
    assert found["lang"] == language, where
    assert found["page"][0] <= found["page"][1] + 1, f"{where}: the page scrolls sideways"
    if found["results"]:
        assert found["results"][0] <= found["results"][1] + 1, f"{where}: the list scrolls"
    if url.startswith(NOT_OURS):
        return found
    other = ENGLISH_WORDS if language == "tr" else TURKISH_WORDS
    leaked = {m.group(0) for m in other.finditer(found["chrome"])}
    if url.startswith("/auth/"):
        leaked -= {"Finance"}  # the groups' own names ("Finance operators") are data there
    leaked = sorted(leaked)
    assert not leaked, f"{where}: {leaked} in the page's own words"
    codes = sorted(
        {m.group(0) for m in RAW_CODE.finditer("\n".join([found["chrome"], *found["cells"]]))}
    )
    assert not codes, f"{where}: raw codes {codes}"
    # A code in snake case in the page's own words ("outside_change", "in_doubt").
    # The upstreams' operations keep the names their contracts give them ("Paynet ·
    # create_invoice", as "WiseCP · UpdateInvoiceItem"): the call log's filter names them so.
    operations = {op for _service, op in operation_catalogue()}
    snake = sorted(set(SNAKE_CODE.findall(found["chrome"])) - operations)
    assert not snake, f"{where}: codes {snake} in the page's own words"
    if language == "tr":
        dotless = sorted({m.group(0) for m in DOTLESS_I.finditer(found["text"])})
        assert not dotless, f"{where}: dotless capital I in {dotless}"
        for cell in found["cells"]:
            assert not ISO_DATE.search(cell), f"{where}: a date not as dd.mm.yyyy: {cell!r}"
            for day in DAY.findall(cell):
                assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4}", day), f"{where}: {day!r}"
    pattern = TR_MONEY if language == "tr" else EN_MONEY
    for amount in found["money"]:
        for line in amount.splitlines():
            assert pattern.match(line.strip()), f"{where}: money written as {line!r}"
    return found


# The superuser in both languages; an operator and a viewer, who meet other pages (masked
# names, fewer actions, the 403 page), in one language each.
@pytest.mark.parametrize(
    ("language", "reader"), [("tr", "boss"), ("en", "boss"), ("tr", "ayse"), ("en", "veli")]
)
def test_every_admin_page_reads_in_one_language_and_fits_1366_px(
    browser, live_server, world, language, reader
):
    context = browser.new_context(
        base_url=live_server.url,
        locale="tr-TR" if language == "tr" else "en-US",
        timezone_id="Europe/Istanbul",
        viewport={"width": WIDTH, "height": HEIGHT},
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    # Whatever the Content-Security-Policy blocks (a script, a handler, a style, an image) the
    # browser reports on the console: no page may need anything it forbids.
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        log_in(page, reader)
        if language != "tr":
            # Turkish unless chosen: the header's language switch, as staff do (its listener
            # lives in a static file: the CSP runs no inline onchange).
            with page.expect_navigation():
                page.select_option("#language-switch select", language)
        pages = _pages(world)
        for name, url in pages.items():
            response = page.goto(url)
            # A page the reader may not open says so, in the reader's language (checked too).
            allowed = (200,) if reader == "boss" else (200, 403)
            assert response.status in allowed, f"{language} {reader} {url}: {response.status}"
            found = _check(page, url, language)
            if reader != "boss":
                continue
            if name in SHOTS and language in SHOTS[name]:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{language}.png"))
            if name == "dashboard":
                # The navigation (the app list) is on the first screen, not under the charts.
                top = page.locator("#content-main .app-list, #content-main .module").first
                assert top.bounding_box()["y"] < HEIGHT, "the app list is below the first screen"
                assert page.locator("#my-actions li").count() >= 1, "the reader's own pushes"
            if name == "job-paused":
                assert "Paynet" in page.locator("#job-paused").inner_text()
                assert page.locator("#job-in-doubt tbody tr").count() == 1
            if name == "job-item-awaiting-approval":
                # The approver reads the item, its customer and its change, not a bare number.
                cells = page.locator("#approval-sample tbody tr td").all_inner_texts()
                assert "Hosting 2026" in cells and len(cells) == 5, cells
            if name == "job-awaiting-approval":
                # "Reddet" is a red button like Django's delete, not the browser's grey one.
                reject = page.locator("#reject-button").evaluate(
                    "e => getComputedStyle(e).backgroundColor"
                )
                assert reject not in ("rgba(0, 0, 0, 0)", "rgb(239, 239, 239)"), reject
            if name == "upstream-job":
                # Titles were cut at about 15 letters.
                width = page.locator("td.field-title_display .truncated").first.evaluate(
                    "e => parseFloat(getComputedStyle(e).maxWidth)"
                )
                assert width >= 240, f"{language}: job titles cut at {width}px"
            if name == "subscriptions-subscriptioninvoice":
                # The charge date filter has the calendar the forms have.
                assert page.locator("#changelist-filter .datetimeshortcuts .date-icon").count() >= 2
                # "Today" and the calendar on one line (they were stacked one per line).
                shortcut = page.locator("#changelist-filter .datetimeshortcuts").first
                assert shortcut.bounding_box()["height"] < 30, shortcut.bounding_box()
                assert found["money"], "the payment records list writes its amounts"
                # Each filter's whole heading, the Turkish title in its own dative.
                headings = page.locator("#changelist-filter summary").all_inner_texts()
                for heading in HEADINGS[language]["payment-records"]:
                    assert heading in headings, (language, headings)
            if name == "upstream-job":
                headings = page.locator("#changelist-filter summary").all_inner_texts()
                for heading in HEADINGS[language]["jobs"]:
                    assert heading in headings, (language, headings)
            if name == "dashboard":
                # The charts are drawn under the CSP (server-side SVG, styled by our CSS).
                assert page.locator("svg.chart").count() >= 1
                assert page.locator("svg.chart rect.bar").count() >= 1
            if name == "dashboard":
                # Each upstream's mirror age: Paynet's sync ran a moment ago ("as of 09:41, ...").
                age = page.locator("#mirror-paynet .mirror-age").inner_text()
                assert re.search(r"\d\d:\d\d", age), age
                assert page.locator("#mirror-wisecp").inner_text()
            if name == "job-sync":
                # The sync's figures and the records that changed (one changed, one vanished).
                assert page.locator("#sync-summary [data-key=vanished]").inner_text() == "1"
                assert page.locator("#sync-summary [data-key=updated]").inner_text() == "1"
                # Both records are of one subscription: one item, both changes on its row.
                changed = page.locator("#sync-changed tbody tr")
                assert changed.count() == 1 and "→" in changed.inner_text()
            if name == "job-cancelled":
                # Cancelled after 3 of 10: the bar and the count say 3, not 10 of 10.
                assert page.locator("#job-bar").get_attribute("value") == "3"
                assert page.locator("#job-done").inner_text() == "3"
                assert page.locator("#job-percent").inner_text() == "30%"
        if reader != "boss":
            assert blocked == [], blocked
            return
        # A confirmation page reached from a list (the bulk due date): its pickers and buttons.
        page.goto(reverse("admin:billing_invoiceitem_changelist"))
        page.locator("input.action-select").first.check()
        page.select_option("select[name=action]", "set_due_date")
        page.locator("button[name=index], .actions button[type=submit]").first.click()
        page.wait_for_selector("#bulk-confirm")
        _check(page, "bulk-due-date", language)
        assert page.locator(".datetimeshortcuts .date-icon, .datetimeshortcuts a").count() > 0
        if language == "tr":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"bulk-due-date-{language}.png"))
        primary = page.locator("#preview-button").evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        assert primary not in ("rgba(0, 0, 0, 0)", "rgb(239, 239, 239)"), "a styled button"
        # An error is summed up at the top of the page, and the focus is there.
        page.fill("#id_due_date_0", "31.02.2025")
        page.fill("#id_due_date_1", "10:00")
        page.locator("#preview-button").click()
        page.wait_for_selector("#error-summary")
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert page.locator("#error-summary a").count() >= 1
        # The secondary button ("Hayır, geri dön") is as tall as the primary, on its line.
        boxes = [
            page.locator(selector).first.bounding_box()
            for selector in ("#preview-button", ".submit-row a.cancel-link")
        ]
        assert abs(boxes[0]["height"] - boxes[1]["height"]) <= 1, boxes
        assert abs(boxes[0]["y"] - boxes[1]["y"]) <= 1, boxes
        # The drift report's confirmation page has a way back.
        page.goto(reverse("admin:upstream_drift_changelist"))
        page.locator("input.action-select").first.check()
        page.select_option("select[name=action]", "accept_selected")
        page.locator(".actions button[type=submit]").first.click()
        page.wait_for_selector("#drift-confirm")
        _check(page, "drift-accept", language)
        assert page.locator("#drift-back").is_visible()
        # The API docs draw every operation under the same policy (Swagger UI, our files).
        page.goto("/api/docs/")
        page.wait_for_selector(".swagger-ui .opblock")
        assert blocked == [], blocked
    finally:
        context.close()


# A few list filters' headings: Django's "durum göre" was neither grammar nor English.
HEADINGS = {
    "tr": {
        "payment-records": ("Duruma göre", "Çekim tarihine göre"),
        "jobs": ("Türe göre", "Oluşturulma tarihine göre"),
    },
    "en": {
        "payment-records": ("By status", "By charge date"),
        "jobs": ("By kind", "By creation date"),
    },
}

# Which pages' screenshots the README shows (a few, small): page name -> languages.
SHOTS = {
    "dashboard": ("tr", "en"),
    "subscriptions-subscriptioninvoice": ("tr",),
    "billing-invoiceitem": ("tr",),
    "upstream-upstreamcall": ("en",),
    "job-cancelled": ("tr",),
    "record-change-status": ("tr",),
    "job-paused": ("tr",),
    "job-sync": ("tr",),
    "job-awaiting-approval": ("tr",),
    "job-item-awaiting-approval": ("en",),
    "upstream-drift": ("tr",),
}


def test_money_and_lira_pattern_examples():
    # The patterns above, on the product's own formatter (a mistake in them would pass pages).
    from django.utils import translation

    from upstream.l10n.formats import money

    with translation.override("tr"):
        assert TR_MONEY.match(money(Decimal("1234.5")))
    with translation.override("en"):
        assert EN_MONEY.match(money(Decimal("1234.5")))
    assert DOTLESS_I.search("Iş kalemleri") and not DOTLESS_I.search("Işık Yılmaz")
