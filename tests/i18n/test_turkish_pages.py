"""What Turkish (and English) staff read on the admin's pages: capitals, labels, formats."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone, translation

from billing.models import Invoice, InvoiceItem
from subscriptions.models import Subscription
from upstream.l10n import capitals as text
from upstream.l10n.formats import duration
from upstream.models import Job, UpstreamCall

# A Turkish word whose first letter should be a dotted capital İ but came out as a plain I.
DOTLESS = re.compile(r"\bI(ş|s[a-zçğıöşü]|l[e]|ad|pt|zin|çe|nd|şl|st|ade)")


@pytest.fixture
def turkish(settings):
    settings.LANGUAGE_CODE = "tr"
    with translation.override("tr"):
        yield


@pytest.fixture
def invoice(db) -> Invoice:
    invoice = Invoice.objects.create(
        wisecp_id=389,
        number="#389",
        status="paid",
        currency="TRY",
        subtotal=Decimal("4548.80"),
        tax=Decimal("409.76"),
        total=Decimal("4958.56"),
        taxation_type="exclusive",
        created_at_upstream=timezone.now(),
    )
    InvoiceItem.objects.create(
        wisecp_id=1704,
        invoice=invoice,
        description="Bakiye yükleme",
        amount=Decimal("2500"),
        total=Decimal("2500"),
        order_id=4996,
    )
    return invoice


def test_capfirst_writes_a_dotted_capital_in_turkish_only() -> None:
    with translation.override("tr"):
        assert text.capfirst("iş kalemleri") == "İş kalemleri"
        assert text.capfirst("ırmak") == "Irmak"
        assert text.upper("ilerleme") == "İLERLEME"
    with translation.override("en"):
        assert text.capfirst("item") == "Item"
        assert text.upper("ilerleme") == "ILERLEME"


def test_every_template_capfirst_is_turkish_aware(turkish) -> None:
    rendered = Template("{{ v|capfirst }} {{ v|upper }}").render(Context({"v": "işler"}))
    assert rendered == "İşler İŞLER"


def test_job_pages_write_is_with_a_dotted_capital(admin_client, turkish) -> None:
    Job.objects.create(kind="paynet.invoice_status", title="x", total=1)
    for url in (
        reverse("admin:index"),
        reverse("admin:upstream_job_changelist"),
        reverse("admin:upstream_jobitem_changelist"),
        reverse("admin:upstream_upstreamcall_changelist"),
        reverse("admin:auth_group_add"),
    ):
        page = admin_client.get(url).content.decode()
        assert not DOTLESS.search(re.sub(r"<[^>]+>", " ", page)), url
    page = admin_client.get(reverse("admin:upstream_job_changelist")).content.decode()
    assert "İşler" in page
    assert "<h1>Göstermek için bir iş seçin</h1>" in page  # not "… İş seçin" mid-sentence
    assert 'lang="tr"' in page  # CSS text-transform needs it to write İLERLEME


def test_job_kind_is_shown_by_its_label(admin_client, turkish) -> None:
    Job.objects.create(kind="paynet.invoice_status", title="x", total=1)
    page = admin_client.get(reverse("admin:upstream_job_changelist")).content.decode()
    assert "Paynet: ödeme kaydı durumu" in page
    assert ">paynet.invoice_status<" not in page


def test_change_page_title_starts_with_a_capital(admin_client, invoice, turkish) -> None:
    page = admin_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    html = page.content.decode()
    assert "<h1>Fatura göster</h1>" in html
    assert "<title>#389 | Fatura göster |" in html


def test_detail_page_writes_money_with_the_lira_and_ids_without_grouping(
    admin_client, invoice, turkish
) -> None:
    html = admin_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk])).content
    html = html.decode()
    assert "₺\u00a04.958,56" in html
    assert "₺\u00a04.548,80" in html
    assert "4996" in html and "4.996" not in html  # the linked service id, in the items
    assert "Vergi fiyatlara eklenir" in html and ">exclusive<" not in html
    listing = admin_client.get(reverse("admin:billing_invoiceitem_changelist")).content.decode()
    assert "1704" in listing and "1.704" not in listing


def test_subscription_status_is_its_label(admin_client, db, turkish) -> None:
    sub = Subscription.objects.create(subscription_id="s-1", reference_no="R1", status=0)
    html = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    assert "Bekliyor" in html.content.decode()


def test_call_duration_reads_in_seconds(admin_client, db, turkish) -> None:
    assert duration(15004) == "15,0 sn"
    assert duration(850) == "850 ms"
    call = UpstreamCall.objects.create(
        service="paynet",
        operation="invoice_status_update",
        method="POST",
        url="https://x",
        outcome="in_doubt",
        duration_ms=15004,
        created_at=timezone.now(),
    )
    html = admin_client.get(reverse("admin:upstream_upstreamcall_change", args=[call.pk]))
    html = html.content.decode()
    assert "15,0 sn" in html and "15.004" not in html
    assert str(call) == f"#{call.pk} Paynet invoice_status_update (Belirsiz)"
    with translation.override("en"):
        assert duration(15004) == "15.0 s"


def test_known_wisecp_messages_read_in_turkish_and_every_message_ends_a_sentence() -> None:
    from billing.client import readable_message

    with translation.override("tr"):
        assert readable_message("Invoice item could not be updated") == (
            "fatura kalemi güncellenemedi."
        )
        assert readable_message("Bu fatura kilitli") == "Bu fatura kilitli."
        assert "Billing/UpdateInvoiceItem" in readable_message(
            "No permission for Billing/UpdateInvoiceItem"
        )


def test_an_amount_below_the_minimum_is_refused_in_turkish_numbers() -> None:
    from django import forms

    from subscriptions.forms import LiraField

    with translation.override("tr"), pytest.raises(forms.ValidationError) as info:
        LiraField(min_value=0.01).clean("0")
    assert info.value.messages == ["En az ₺\u00a00,01 tutarında bir değer girin."]


def test_a_job_title_is_read_in_the_readers_language(admin_client, db, settings) -> None:
    from django.utils.translation import gettext_noop

    from subscriptions.models import InvoiceStatus
    from upstream.l10n.stored import text, to_json

    with translation.override("tr"):
        title = text(
            gettext_noop("Set %(count)s payment records to “%(status)s”"),
            count=3,
            status=InvoiceStatus.CANCEL.label,
        )
    assert title == "3 ödeme kaydını “İptal edildi” yap"
    job = Job.objects.create(
        kind="paynet.invoice_status", title=title, title_text=to_json(title), total=3
    )
    old = Job.objects.create(kind="paynet.invoice_status", title="Eski başlık", total=1)
    with translation.override("en"):
        assert job.display_title == "Set 3 payment records to “Cancelled”"
        assert old.display_title == "Eski başlık"  # stored before titles were kept by id
    settings.LANGUAGE_CODE = "en"
    page = admin_client.get(reverse("admin:upstream_job_changelist")).content.decode()
    assert "Set 3 payment records to “Cancelled”" in page
    assert "ödeme kaydı" not in page
    page = admin_client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert "<h1>Set 3 payment records to “Cancelled”</h1>" in page


def test_downloads_keep_every_letter_of_their_turkish_name(admin_client, invoice, turkish):
    from upstream.admin.tools import attachment_disposition

    header = attachment_disposition("ödeme-kayıtları-20261129-1200.csv")
    assert header == (
        'attachment; filename="odeme-kayitlari-20261129-1200.csv"; '
        "filename*=UTF-8''%C3%B6deme-kay%C4%B1tlar%C4%B1-20261129-1200.csv"
    )
    response = admin_client.post(
        reverse("admin:billing_invoice_changelist"),
        {"action": "export_csv", "_selected_action": [invoice.pk]},
    )
    disposition = response["Content-Disposition"]
    assert 'filename="faturalar-' in disposition
    job = Job.objects.create(kind="paynet.invoice_status", title="x", total=0)
    for fmt in ("csv", "xlsx"):
        response = admin_client.get(reverse("admin:upstream_job_results", args=[job.pk, fmt]))
        disposition = response["Content-Disposition"]
        assert f"filename*=UTF-8''i%C5%9F-{job.pk}-sonu%C3%A7lar%C4%B1-" in disposition
        assert f'filename="is-{job.pk}-sonuclari-' in disposition


def test_long_texts_in_lists_are_cut_with_the_whole_on_hover(admin_client, invoice) -> None:
    item = invoice.items.get()
    item.description = "Kurumsal E-posta - 10 Hesap - Yıllık paket, yenileme ve taşıma dahil"
    item.save()
    html = admin_client.get(reverse("admin:billing_invoiceitem_changelist")).content.decode()
    assert f'<span class="truncated" title="{item.description}">' in html
    # Chosen columns: what lives on the item's page is not in the list.
    assert "field-order_id" not in html and "field-synced_at" not in html


def test_what_a_job_item_changed_is_described_in_the_readers_language() -> None:
    from billing.pushes import InvoiceItemUpdateHandler
    from billqueries.jobs import BillQueryHandler

    counts = {"found": 1, "no_debt": 2, "failed": 1, "summary": "1 borçlu, 2 borçsuz"}
    with translation.override("en"):
        assert BillQueryHandler().describe(counts) == "1 with debt, 2 without, 1 failed"
        assert InvoiceItemUpdateHandler().describe({"summary": "description, amount"}) == (
            "description, unit price"
        )
        # A bulk edit's summary is data ("old → new"), shown as stored.
        assert InvoiceItemUpdateHandler().describe({"summary": "3 → 4"}) == "3 → 4"
    with translation.override("tr"):
        assert InvoiceItemUpdateHandler().describe({"summary": "quantity"}) == "adet"


def test_a_job_items_message_is_read_in_the_readers_language(admin_client, db, settings):
    from types import SimpleNamespace

    from django.utils.translation import gettext_noop

    from upstream.calls.client import UpstreamClient
    from upstream.calls.errors import UpstreamError
    from upstream.l10n.stored import message_fields, text
    from upstream.models import JobItem

    # Written by a Turkish worker: the upstream's error, wrapped in the runner's sentence.
    with translation.override("tr"):
        try:
            UpstreamClient.raise_for_status(
                SimpleNamespace(service_label="WiseCP", service="wisecp"), None, 502, ""
            )
        except UpstreamError as error:
            caught = error
        message = text(
            gettext_noop(
                "%(error)s The change may have reached the upstream; it will be read back."
            ),
            error=caught,
        )
    assert str(message) == (
        "WiseCP sunucu hatası verdi (HTTP 502). Değişiklik karşı sisteme ulaşmış olabilir; "
        "önce geri okunacak."
    )
    job = Job.objects.create(kind="wisecp.invoice_item_update", title="x", total=1, failed=1)
    item = JobItem.objects.create(
        job=job,
        position=1,
        target_type="billing.invoiceitem",
        target_id="1",
        target_repr="#1",
        state="done",
        outcome="in_doubt",
        **message_fields(message),
    )
    old = JobItem.objects.create(
        job=job, position=2, target_type="t", target_id="2", target_repr="#2", message="Eski"
    )
    with translation.override("en"):
        assert item.display_message == (
            "WiseCP had a server error (HTTP 502). The change may have reached the upstream; "
            "it will be read back."
        )
        assert old.display_message == "Eski"  # kept before messages were kept by id
    settings.LANGUAGE_CODE = "en"
    page = admin_client.get(reverse("admin:upstream_job_change", args=[job.pk])).content
    assert "WiseCP had a server error (HTTP 502). The change may have" in page.decode()
    assert "sunucu hatası" not in page.decode()


def test_a_skipped_items_reason_is_read_in_the_readers_language() -> None:
    from subscriptions.pushes import _label
    from upstream.l10n.stored import message_fields, render, text

    with translation.override("tr"):
        reason = text(
            "Not sent: the record changed since the preview (%(then)s, now %(now)s).",
            then=_label(0),
            now=_label(5),
        )
    stored = message_fields(reason)
    assert stored["message"] == (
        "Gönderilmedi: kayıt önizlemeden bu yana değişti (Bekliyor, şimdi İptal edildi)."
    )
    with translation.override("en"):
        assert render(stored["message_text"], stored["message"]) == (
            "Not sent: the record changed since the preview (Waiting, now Cancelled)."
        )
