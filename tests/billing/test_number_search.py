"""A number typed into a search finds the number (ids, invoice numbers), not text containing it:
"388" on the item list reached 11 items of 9 other invoices whose description held "E-2388G",
and a bulk due-date change on that result changed all of them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Invoice, InvoiceItem

T0 = datetime(2025, 1, 1, 7, tzinfo=UTC)


@pytest.fixture
def items(db) -> None:
    for n in (388, 1001, 1002):
        invoice = Invoice.objects.create(
            wisecp_id=n,
            number=f"#{n}",
            status="unpaid",
            currency="TRY",
            created_at_upstream=T0,
            full_name="Ayşe Yılmaz",
        )
        InvoiceItem.objects.create(
            wisecp_id=n * 10,
            invoice=invoice,
            description="Sunucu Xeon E-2388G" if n != 388 else "Alan adı",
            amount=Decimal(10),
            total=Decimal(10),
        )


@pytest.mark.parametrize("term", ["388", "#388"])
def test_a_number_finds_the_invoice_not_descriptions_holding_it(admin_client, items, term):
    page = admin_client.get(reverse("admin:billing_invoiceitem_changelist"), {"q": term})
    assert [i.invoice.number for i in page.context["cl"].result_list] == ["#388"]


def test_text_with_a_number_still_searches_descriptions(admin_client, items):
    page = admin_client.get(reverse("admin:billing_invoiceitem_changelist"), {"q": "E-2388G"})
    assert sorted(i.wisecp_id for i in page.context["cl"].result_list) == [10010, 10020]


@pytest.mark.parametrize(
    ("language", "said"),
    [
        ("en", "A number is matched exactly, never inside a text."),
        ("tr", "Bir sayı yalnızca tam eşleşir, bir metnin içinde aranmaz."),
    ],
)
def test_the_help_text_says_a_number_is_matched_exactly(admin_client, items, language, said):
    admin_client.cookies["django_language"] = language
    page = admin_client.get(reverse("admin:billing_invoiceitem_changelist"))
    assert said in page.content.decode()
