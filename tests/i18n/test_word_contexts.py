"""One English word, two Turkish meanings: each use carries its context (pgettext)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone, translation

from billing.models import Invoice, InvoiceItem
from upstream.models import Drift


@pytest.fixture
def drift(db) -> Drift:
    invoice = Invoice.objects.create(
        wisecp_id=1,
        number="#1",
        status="unpaid",
        currency="TRY",
        created_at_upstream=timezone.now(),
    )
    item = InvoiceItem.objects.create(
        wisecp_id=11, invoice=invoice, description="x", amount=Decimal(5), total=Decimal(5)
    )
    now = timezone.now()
    return Drift.objects.create(
        service="wisecp",
        content_type=ContentType.objects.get_for_model(InvoiceItem),
        object_id=item.pk,
        record_label=str(item),
        field="amount",
        expected="5.00",
        found="7.00",
        kind=Drift.Kind.OUTSIDE_CHANGE,
        first_seen_at=now,
        last_seen_at=now,
    )


def test_the_drift_reports_found_value_is_not_the_debt_found(admin_client, drift):
    admin_client.cookies["django_language"] = "tr"
    url = reverse("admin:upstream_drift_changelist")
    listed = admin_client.get(url).content.decode()
    assert "Bulunan" in listed and "orç bulunan" not in listed.lower()
    confirm = admin_client.post(
        url, {"action": "accept_selected", "_selected_action": [drift.pk]}
    ).content.decode()
    assert "beklenen" in confirm and "bulunan" in confirm
    assert "borç bulunan" not in confirm.lower()


def test_a_bill_query_batch_still_counts_lines_with_debt_found():
    from billqueries.models import BillQueryBatch

    with translation.override("tr"):
        assert str(BillQueryBatch._meta.get_field("found_count").verbose_name) == "borç bulunan"
        assert str(Drift._meta.get_field("found").verbose_name) == "bulunan"


def test_turkish_lists_use_the_singular_after_a_number_and_whole_filter_headings(admin_client, db):
    from tests.upstream.test_big_lists import payment_records

    admin_client.cookies["django_language"] = "tr"
    url = reverse("admin:subscriptions_subscriptioninvoice_changelist")
    empty = admin_client.get(url, {"q": "99999999"}).content.decode()
    assert "0 ödeme kaydı" in empty and "ödeme kayıtları nesnelerini" not in empty
    payment_records(51, 0)
    page = admin_client.get(url).content.decode()
    assert "51 ödeme kaydı" in page
    assert "Tümünü seç: 51 ödeme kaydı" in page
    # Each filter's own heading, the title in the dative: never Django's "durum göre".
    assert "<summary>Duruma göre</summary>" in page
    assert "<summary>Çekim tarihine göre</summary>" in page
    assert "durum göre" not in page.lower() and "tarihi göre" not in page
    admin_client.cookies["django_language"] = "en"
    page = admin_client.get(url).content.decode()
    assert "51 payment records" in page and "Select all 51 payment records" in page
    assert "<summary>By status</summary>" in page
    assert "<summary>By charge date</summary>" in page


def test_a_resolved_drift_reads_as_one_turkish_sentence(drift):
    from upstream.history.timeline import record_timeline

    drift.state, drift.resolved_at = Drift.State.REPUSHED, timezone.now()
    drift.save()
    with translation.override("tr"):
        summaries = [
            e.summary for e in record_timeline(InvoiceItem.objects.get(pk=drift.object_id))
        ]
    assert any(s.startswith("Sapma yeniden gönderildi: ") for s in summaries), summaries


def test_a_timeline_reads_a_turkish_operators_job_in_english(db):
    from django.contrib.auth import get_user_model
    from django.utils.translation import gettext_noop

    from upstream.history.timeline import record_timeline
    from upstream.l10n.stored import message_fields, text, to_json
    from upstream.models import Job, JobItem

    invoice = Invoice.objects.create(
        wisecp_id=2,
        number="#2",
        status="unpaid",
        currency="TRY",
        created_at_upstream=timezone.now(),
    )
    item = InvoiceItem.objects.create(
        wisecp_id=22, invoice=invoice, description="x", amount=Decimal(5), total=Decimal(5)
    )
    user = get_user_model().objects.create_user("ayse")
    with translation.override("tr"):
        title = text(gettext_noop("Update invoice item %(item)s"), item=str(item))
        message = text(gettext_noop("Already so."))
    job = Job.objects.create(
        kind="wisecp.invoice_item_update",
        title=title,
        title_text=to_json(title),
        total=1,
        created_by=user,
    )
    JobItem.objects.create(
        job=job,
        position=1,
        target_type="billing.invoiceitem",
        target_id=str(item.pk),
        target_repr=str(item),
        state="done",
        outcome="skipped",
        **message_fields(message),
    )
    with translation.override("en"):
        [event] = [e for e in record_timeline(item) if e.kind == "operation"]
    assert event.summary.startswith(f"Update invoice item {item}: ")
    assert event.summary.endswith("— Already so.")


def test_a_drift_entry_is_named_by_its_field_and_kind_not_their_codes(drift):
    with translation.override("tr"):
        turkish = str(drift)
    with translation.override("en"):
        english = str(drift)
    assert english == f"{drift.record_label} · unit price (Changed upstream)"
    assert "amount" not in turkish and "outside_change" not in turkish
    assert turkish.startswith(f"{drift.record_label} · birim fiyat (")
