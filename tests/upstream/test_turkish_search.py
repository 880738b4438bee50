"""Searches fold Turkish case (upstream.lists.fold): a name is found however it is typed, on
SQLite and on PostgreSQL (the PostgreSQL pass of .ci/run runs this same file there)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse

from billing.models import Invoice, InvoiceItem
from subscriptions.models import Subscription
from upstream.lists.fold import fold

T0 = datetime(2025, 1, 1, 7, tzinfo=UTC)
NAMES = [
    "Özkan Yıldırım",
    "ŞAHİN ÇELİK",
    "Işık Özkan",
    "İbrahim Güneş",
    "IBRAHIM OZKAN",
    "Boğaziçi Ltd",
    "Ayşe Yılmaz",
]
# term -> the names it finds
CASES = {
    "özkan": {"Özkan Yıldırım", "Işık Özkan"},
    "ÖZKAN": {"Özkan Yıldırım", "Işık Özkan"},
    "şahin": {"ŞAHİN ÇELİK"},
    "çelik": {"ŞAHİN ÇELİK"},
    "ışık": {"Işık Özkan"},
    "IŞIK": {"Işık Özkan"},
    "ibrahim": {"İbrahim Güneş", "IBRAHIM OZKAN"},
    "İBRAHİM": {"İbrahim Güneş", "IBRAHIM OZKAN"},
    "YILDIRIM": {"Özkan Yıldırım"},
    "BOĞAZİÇİ": {"Boğaziçi Ltd"},
    "güneş": {"İbrahim Güneş"},
}


def test_fold_treats_every_i_alike_and_lowers_turkish_capitals():
    assert fold("İBRAHİM IŞIK ÖZ ÇAĞ ŞÜ") == "ibrahim işik öz çağ şü"
    assert fold("ibrahim ışık") == fold("IBRAHIM IŞIK")


@pytest.fixture
def subscriptions(db) -> None:
    Subscription.objects.bulk_create(
        Subscription(
            subscription_id=f"sub-{n}",
            reference_no=f"9{n:07d}",
            name_surname=name,
            created_date=T0,
        )
        for n, name in enumerate(NAMES)
    )


@pytest.mark.parametrize("term", sorted(CASES))
def test_a_name_search_folds_turkish_case(admin_client, subscriptions, term):
    page = admin_client.get(reverse("admin:subscriptions_subscription_changelist"), {"q": term})
    found = {s.name_surname for s in page.context["cl"].result_list}
    assert found == CASES[term]


@pytest.fixture
def invoices(db) -> None:
    for n, name in enumerate(NAMES, start=1):
        invoice = Invoice.objects.create(
            wisecp_id=n,
            number=f"#{n}",
            status="unpaid",
            currency="TRY",
            created_at_upstream=T0,
            full_name=name,
            company_name="",
        )
        InvoiceItem.objects.create(
            wisecp_id=n,
            invoice=invoice,
            description=f"Hosting {name}",
            amount=Decimal(10),
            total=Decimal(10),
        )


def test_invoice_customer_item_description_and_customer_filter_fold_turkish_case(
    admin_client, invoices
):
    def names(url: str, **params: str) -> set[str]:
        page = admin_client.get(url, params)
        rows = page.context["cl"].result_list
        return {getattr(row, "full_name", None) or row.invoice.full_name for row in rows}

    invoices_url = reverse("admin:billing_invoice_changelist")
    items_url = reverse("admin:billing_invoiceitem_changelist")
    assert names(invoices_url, q="şahin") == {"ŞAHİN ÇELİK"}
    assert names(items_url, q="ibrahim") == {"İbrahim Güneş", "IBRAHIM OZKAN"}
    assert names(invoices_url, customer="boğaziçi") == {"Boğaziçi Ltd"}
    assert names(items_url, customer="YILDIRIM") == {"Özkan Yıldırım"}


def test_an_items_stored_fold_follows_every_write_and_finds_what_the_fold_finds(
    admin_client, invoices
):
    """billing.InvoiceItem.description_folded is kept by the database (issue 20): created,
    saved, updated in bulk, it is fold(description); the search reads it and finds the same."""
    from upstream.admin.lists import contains, search_q

    items_url = reverse("admin:billing_invoiceitem_changelist")

    def found(term: str) -> set[str]:
        rows = admin_client.get(items_url, {"q": term}).context["cl"].result_list
        return {row.description for row in rows}

    for item in InvoiceItem.objects.all():
        assert item.description_folded == fold(item.description)
    item = InvoiceItem.objects.get(wisecp_id=4)  # "Hosting İbrahim Güneş"
    item.description = "YEDEKLEME Işıklı"
    item.save()
    assert found("yedekleme") == found("ışıklı") == {"YEDEKLEME Işıklı"}
    assert "İbrahim Güneş" not in " ".join(found("ibrahim"))
    InvoiceItem.objects.filter(wisecp_id=5).update(description="SSL ÇANAKKALE")
    assert found("çanakkale") == {"SSL ÇANAKKALE"}
    item.refresh_from_db()
    assert item.description_folded == "yedekleme işikli"
    # The stored column and the expression agree on every row.
    for term in ("hosting", "özkan", "IŞIK", "şahin"):
        stored = search_q(InvoiceItem, [contains("description")], term).q
        assert set(InvoiceItem.objects.filter(stored).values_list("pk", flat=True)) == {
            i.pk for i in InvoiceItem.objects.all() if fold(term) in fold(i.description)
        }


def test_a_jobs_title_and_reason_search_reads_their_stored_folds(admin_client, db):
    """upstream.Job.title_folded / reason_folded (issue 20): the search compares them, and
    they follow the title and reason as written."""
    from upstream.admin.lists import contains, search_q
    from upstream.models import Job

    job = Job.objects.create(kind="paynet.invoice_status", title="İPTAL ET", reason="Işık talebi")
    Job.objects.create(kind="paynet.invoice_status", title="Vade", reason="Müşteri")
    q = search_q(Job, [contains("title"), contains("reason")], "ışık").q
    sql = str(Job.objects.filter(q).query).lower()
    assert "title_folded" in sql and "reason_folded" in sql and "translate(" not in sql

    def found(term: str) -> set[int]:
        page = admin_client.get(reverse("admin:upstream_job_changelist"), {"q": term})
        return {row.pk for row in page.context["cl"].result_list}

    assert found("iptal") == found("IŞIK") == {job.pk}
    Job.objects.filter(pk=job.pk).update(reason="Çağrı merkezi")
    assert found("ışık") == set() and found("ÇAĞRI") == {job.pk}


def test_an_invoices_customer_search_and_filter_read_the_stored_folds(admin_client, invoices):
    """billing.Invoice.full_name_folded / company_name_folded (issue 20): the search box and the
    customer filter of both lists compare them (on SQLite a customer search tests every
    invoice: LOWER and twelve REPLACEs per name were most of it), and they follow the names."""
    from django.test.utils import CaptureQueriesContext

    invoices_url = reverse("admin:billing_invoice_changelist")
    items_url = reverse("admin:billing_invoiceitem_changelist")
    for invoice in Invoice.objects.all():
        assert invoice.full_name_folded == fold(invoice.full_name)
        assert invoice.company_name_folded == fold(invoice.company_name)
    for url, params in (
        (invoices_url, {"q": "şahin"}),
        (invoices_url, {"customer": "şahin"}),
        (items_url, {"customer": "şahin"}),
    ):
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url, params).status_code == 200
        searched = [q["sql"].lower() for q in queries if "şahin" in q["sql"].lower()]
        assert searched, (url, params)
        for sql in searched:
            assert "full_name_folded" in sql and "company_name_folded" in sql, sql
            assert "replace(" not in sql and "translate(" not in sql, sql
    invoice = Invoice.objects.get(full_name="ŞAHİN ÇELİK")
    Invoice.objects.filter(pk=invoice.pk).update(full_name="ZÜMRÜT Işıkçı")
    invoice.refresh_from_db()
    assert invoice.full_name_folded == "zümrüt işikçi"
    rows = admin_client.get(invoices_url, {"q": "zümrüt"}).context["cl"].result_list
    assert [row.pk for row in rows] == [invoice.pk]


def test_a_stored_fold_is_not_history_nor_an_export_column(rf, admin_user, invoices):
    """A generated column repeats its source: it is no tracked field, and an export without
    its own column list leaves it out."""
    from django.contrib import admin

    from billing.admin import InvoiceItemAdmin
    from upstream.history.changes import tracked_fields
    from upstream.models import Job

    tracked = {f.name for f in tracked_fields(InvoiceItem)}
    assert "description" in tracked and "description_folded" not in tracked
    assert {"title", "reason"} <= {f.name for f in tracked_fields(Job)}
    assert not {"title_folded", "reason_folded"} & {f.name for f in tracked_fields(Job)}

    exporter = InvoiceItemAdmin(InvoiceItem, admin.site)
    exporter.csv_fields = ()  # every concrete column
    request = rf.get("/")
    request.user = admin_user
    response = exporter.export_csv(request, InvoiceItem.objects.all())
    header = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()[0]
    assert "description" in header and "folded" not in header
