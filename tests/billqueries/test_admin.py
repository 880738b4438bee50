"""Admin flows through the test client: add -> preview -> confirm -> batch page, exports, re-run."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import translation
from openpyxl import Workbook, load_workbook

from billqueries.models import BillQueryBatch, BillQueryLine, Institution
from upstream.models import UpstreamCall

from .conftest import iski_numbers, line

pytestmark = pytest.mark.django_db

ADD = reverse("admin:billqueries_billquerybatch_add")


def change_url(batch: BillQueryBatch) -> str:
    return reverse("admin:billqueries_billquerybatch_change", args=[batch.pk])


def preview(client, **data):
    return client.post(ADD, {"step": "preview", **data})


def confirm(client, preview_response, capture):
    signed = preview_response.context["confirm"]["lines"].value()
    with capture(execute=True):
        return client.post(ADD, {"step": "confirm", "lines": signed})


def test_add_preview_confirm_then_batch_page(
    sandbox, institutions, operator_client, django_capture_on_commit_callbacks
) -> None:
    page = operator_client.get(ADD)
    assert page.status_code == 200 and b'name="text"' in page.content
    assert b'name="upload"' in page.content and "İSKİ" in page.content.decode()

    text = (
        "Kurum;Abone No\n"  # a header line is skipped
        "iski;01345677000\n"
        "1;1345600\n"
        "İZSU;12345\n"
        "Türk Telekom 2125550101\n"
        "1;0134569000\n"
        "Nowhere;1234567\n"
    )
    shown = preview(operator_client, text=text, text_source="pasted")
    assert shown.status_code == 200
    html = shown.content.decode()
    assert shown.context["valid_count"] == 3
    assert [(i.number, i.text) for i in shown.context["invalid"]] == [
        (4, "İZSU;12345"),
        (5, "Türk Telekom 2125550101"),
        (7, "Nowhere;1234567"),
    ]
    assert "İZSU expects the Abone Numarası as 9 digits" in html
    assert "Türk Telekom needs the additional number" in html
    assert "No institution is called “Nowhere”" in html
    assert sandbox.ledger("payofin") == []  # nothing sent before the confirmation

    done = confirm(operator_client, shown, django_capture_on_commit_callbacks)
    batch = BillQueryBatch.objects.get()
    assert done.status_code == 302 and done["Location"] == change_url(batch)
    assert batch.source == "pasted" and batch.created_by.username == "operator"
    assert batch.line_count == 3 and batch.state == BillQueryBatch.State.FINISHED
    assert len(sandbox.ledger("payofin", "multipleinvoicequery")) == 1

    page = operator_client.get(change_url(batch))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="bq-found" class="found">2<' in html and 'id="bq-no-debt">1<' in html
    assert "₺\xa0617.00" in html  # 560.00 + 57.00
    assert "DE*** ÖZ****" in html and "Abone Numarasına Ait Borç Kaydı Bulunmamaktadır" in html
    assert 'id="rerun-failed"' not in html  # nothing failed
    # Each line keeps the number it had in the input (a header and invalid lines before it).
    lines = list(batch.lines.order_by("position"))
    assert [ln.line_number for ln in lines] == [2, 3, 6]
    assert '<tr class="outcome-found" id="line-3">\n      <td>6</td>' in html
    # A bill past its due date is highlighted.
    from datetime import timedelta

    from django.utils import timezone

    debt = lines[0].debts.first()
    debt.exp_date = timezone.localdate() - timedelta(days=1)
    debt.save()
    html = operator_client.get(change_url(batch)).content.decode()
    assert html.count('<tr class="overdue">') == 1 and 'class="overdue-label"' in html
    line_page = operator_client.get(
        reverse("admin:billqueries_billqueryline_change", args=[lines[0].pk])
    ).content.decode()
    assert 'class="overdue-label"' in line_page
    filtered = operator_client.get(change_url(batch), {"outcome": "no_debt"})
    assert [ln.subscriber_no for ln in filtered.context["page"]] == ["1345600"]
    by_inst = operator_client.get(change_url(batch), {"soot_code": "30"})
    assert list(by_inst.context["page"]) == []

    progress = operator_client.get(
        reverse("admin:billqueries_billquerybatch_progress", args=[batch.pk])
    ).json()
    assert progress["finished"] and progress["found"] == 2 and progress["done"] == 3


def test_confirm_refuses_a_tampered_preview(institutions, operator_client) -> None:
    response = operator_client.post(ADD, {"step": "confirm", "lines": "not-a-signature"})
    assert response.status_code == 200
    assert b"preview has expired or was changed" in response.content
    assert BillQueryBatch.objects.count() == 0


def test_preview_with_only_invalid_lines_offers_no_confirmation(institutions, operator_client):
    shown = preview(operator_client, text="99;123\n3;1")
    assert shown.context["confirm"] is None and len(shown.context["invalid"]) == 2
    assert b"No line can be queried" in shown.content


def test_empty_input_is_refused_on_the_form(institutions, operator_client) -> None:
    response = preview(operator_client, text="  ")
    assert b"Type or paste some lines, or choose a file." in response.content


def test_csv_upload_with_bom_header_and_comma(
    sandbox, institutions, operator_client, django_capture_on_commit_callbacks
) -> None:
    data = "\ufeffsoot_code,subscriber_no,additional_no\n1,01345677000,\n30,2125550101,\n".encode()
    shown = preview(operator_client, upload=SimpleUploadedFile("lines.csv", data, "text/csv"))
    assert shown.context["valid_count"] == 1 and shown.context["filename"] == "lines.csv"
    assert [i.number for i in shown.context["invalid"]] == [3]
    confirm(operator_client, shown, django_capture_on_commit_callbacks)
    batch = BillQueryBatch.objects.get()
    assert (batch.source, batch.filename) == ("csv", "lines.csv")


def test_xlsx_upload(sandbox, institutions, operator_client) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["Kurum", "Abone No", "Ek No"])
    sheet.append([1, 1345677000, None])  # a number cell: no ".0"
    sheet.append(["Türk Telekom", "2125550101", 7712345])
    sheet.append(["İSKİ", "12", None])
    buffer = io.BytesIO()
    book.save(buffer)
    upload = SimpleUploadedFile("lines.xlsx", buffer.getvalue())
    shown = preview(operator_client, upload=upload)
    assert [(v.number, v.subscriber_no, v.additional_no) for v in shown.context["sample"]] == [
        (2, "1345677000", ""),
        (3, "2125550101", "7712345"),
    ]
    assert [i.number for i in shown.context["invalid"]] == [4]


def _finished_batch(sandbox, run_batch) -> BillQueryBatch:
    sandbox.faults(
        {
            "kind": "reject",
            "service": "payofin",
            "operation": "multipleinvoicequery",
            "match": {"subscriberNo": "1345600"},
            "message": "-6",
            "times": 1,
        }
    )
    return run_batch(
        [line(1, "01345677000"), line(1, "1345600"), line(1, "0134569000"), line(1, "3000001")]
    )


def test_exports_use_turkish_formats_in_csv_and_real_values_in_xlsx(
    sandbox, institutions, run_batch, operator_client
) -> None:
    batch = _finished_batch(sandbox, run_batch)
    debt = batch.lines.get(position=1).debts.get()
    response = operator_client.get(
        reverse("admin:billqueries_billquerybatch_export_csv", args=[batch.pk])
    )
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert rows[0][:4] == ["Line", "Institution code", "Institution", "Subscriber no"]
    first = rows[1]
    assert first[3] == "01345677000" and first[11:14] == ["560,00", "2,00", "562,00"]
    assert first[10] == debt.exp_date.strftime("%d.%m.%Y")
    failed = next(r for r in rows[1:] if r[3] == "1345600")
    assert failed[5] == "Failed" and failed[6] == "-6" and failed[9] == ""

    response = operator_client.get(
        reverse("admin:billqueries_billquerybatch_export_xlsx", args=[batch.pk])
    )
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = list(sheet.iter_rows(min_row=2, values_only=True))
    assert len(values) == len(rows) - 1
    row = next(r for r in values if r[3] == "01345677000")
    assert row[11] == Decimal("560.00") or row[11] == 560
    assert row[10].date() == debt.exp_date if hasattr(row[10], "date") else row[10] == debt.exp_date
    cells = next(r for r in sheet.iter_rows(min_row=2) if r[3].value == "01345677000")
    assert cells[11].number_format == "#,##0.00" and cells[10].number_format == "DD.MM.YYYY"

    only_failed = operator_client.get(
        reverse("admin:billqueries_billquerybatch_export_csv", args=[batch.pk]),
        {"outcome": "failed"},
    )
    body = b"".join(only_failed.streaming_content).decode("utf-8")
    assert body.count("\n") == 2  # header and the one failed line


def test_rerun_failed_from_the_batch_page(
    sandbox, institutions, run_batch, operator_client, django_capture_on_commit_callbacks
) -> None:
    batch = _finished_batch(sandbox, run_batch)
    page = operator_client.get(change_url(batch)).content.decode()
    assert 'id="rerun-failed"' in page and "Re-run 1 failed line" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("admin:billqueries_billquerybatch_rerun", args=[batch.pk])
        )
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.failed_count == 0 and batch.state == BillQueryBatch.State.FINISHED
    rerun = batch.lines.get(subscriber_no="1345600")
    assert rerun.outcome == BillQueryLine.Outcome.NO_DEBT and rerun.attempt == 2


def test_viewer_sees_batches_but_cannot_run_or_rerun(
    sandbox, institutions, run_batch, viewer_client
) -> None:
    batch = _finished_batch(sandbox, run_batch)
    changelist = viewer_client.get(reverse("admin:billqueries_billquerybatch_changelist"))
    assert changelist.status_code == 200 and ADD.encode() not in changelist.content
    assert viewer_client.get(ADD).status_code == 403
    assert viewer_client.post(ADD, {"step": "preview", "text": "1;01345677000"}).status_code == 403
    page = viewer_client.get(change_url(batch))
    assert page.status_code == 200 and b'id="rerun-failed"' not in page.content
    before = len(sandbox.ledger("payofin", "multipleinvoicequery"))
    response = viewer_client.post(
        reverse("admin:billqueries_billquerybatch_rerun", args=[batch.pk]), follow=True
    )
    assert b"You do not have permission to run bill queries" in response.content
    assert len(sandbox.ledger("payofin", "multipleinvoicequery")) == before


def test_line_changelist_filters_search_and_csv(
    sandbox, institutions, run_batch, operator_client, django_assert_max_num_queries
) -> None:
    batch = run_batch([line(1, s) for s in iski_numbers(40)])
    url = reverse("admin:billqueries_billqueryline_changelist")
    with django_assert_max_num_queries(12):
        response = operator_client.get(url, {"outcome__exact": "found"})
    assert response.status_code == 200
    shown = response.context["cl"].result_list
    assert shown and all(ln.outcome == "found" for ln in shown)
    found = operator_client.get(url, {"q": iski_numbers(1)[0]}).context["cl"].result_list
    assert [ln.subscriber_no for ln in found] == iski_numbers(1)
    by_batch = operator_client.get(url, {"batch__id__exact": batch.pk})
    assert by_batch.status_code == 200
    export = operator_client.post(
        url,
        {"action": "export_csv", "select_across": "1", "index": "0", "_selected_action": ["1"]},
    )
    text = b"".join(export.streaming_content).decode("utf-8")
    assert text.count("\n") == 41
    line_page = operator_client.get(
        reverse("admin:billqueries_billqueryline_change", args=[shown[0].pk])
    )
    assert line_page.status_code == 200 and b"upstreamcall" in line_page.content


def test_institution_changelist_and_refresh(sandbox, operator_client, viewer) -> None:
    url = reverse("admin:billqueries_institution_changelist")
    assert b"refresh-catalogue" in operator_client.get(url).content
    response = operator_client.post(reverse("admin:billqueries_institution_refresh"), follow=True)
    assert b"Refreshed from Payofin: 10 created" in response.content
    listed = operator_client.get(url, {"additional_no_required__exact": "1"})
    assert [i.soot_code for i in listed.context["cl"].result_list] == [30]
    searched = operator_client.get(url, {"q": "iski"}).context["cl"].result_list
    assert [i.soot_code for i in searched] == [1]
    call = UpstreamCall.objects.get(operation="sootlist")
    assert call.actor.username == "operator" and call.request_headers["ApiKey"] == "***"
    viewer_client = Client()
    viewer_client.force_login(viewer)
    assert b"refresh-catalogue" not in viewer_client.get(url).content
    assert viewer_client.post(reverse("admin:billqueries_institution_refresh")).status_code == 403


def test_batch_changelist(sandbox, institutions, run_batch, operator_client) -> None:
    run_batch([line(1, "01345677000")])
    response = operator_client.get(reverse("admin:billqueries_billquerybatch_changelist"))
    assert response.status_code == 200 and ADD.encode() in response.content
    assert "₺\xa0560.00" in response.content.decode()


def test_exp_date_is_shown_day_first(sandbox, institutions, run_batch, operator_client):
    batch = run_batch([line(1, "01345677000")])
    debt = batch.lines.get().debts.get()
    assert isinstance(debt.exp_date, date)
    page = operator_client.get(change_url(batch)).content.decode()
    assert debt.exp_date.strftime("%d.%m.%Y") in page


def test_confirm_rechecks_lines_against_the_current_catalogue(
    sandbox, institutions, operator_client, django_capture_on_commit_callbacks
) -> None:
    shown = preview(operator_client, text="3;123456789\n1;01345677000")
    assert shown.context["valid_count"] == 2
    Institution.objects.filter(soot_code=3).update(mask="9999999999")  # a sync changed the rule
    response = confirm(operator_client, shown, django_capture_on_commit_callbacks)
    assert response.status_code == 200 and response.context["confirm"] is None
    assert [i.number for i in response.context["invalid"]] == [1]
    assert b"1 line cannot be queried" in response.content
    assert BillQueryBatch.objects.count() == 0 and sandbox.ledger("payofin") == []


def test_a_200_line_file_is_queried_15_per_request_and_every_line_gets_a_result(
    sandbox, institutions, operator_client, django_capture_on_commit_callbacks
) -> None:
    rows = "".join(f"İSKİ;{number}\n" for number in iski_numbers(200))
    upload = SimpleUploadedFile("borclar.csv", ("Kurum;Abone No\n" + rows).encode(), "text/csv")

    shown = preview(operator_client, upload=upload)
    assert shown.context["valid_count"] == 200 and shown.context["invalid"] == []
    done = confirm(operator_client, shown, django_capture_on_commit_callbacks)

    batch = BillQueryBatch.objects.get()
    assert done["Location"] == change_url(batch)
    assert batch.state == BillQueryBatch.State.FINISHED and batch.line_count == 200
    requests = sandbox.ledger("payofin", "multipleinvoicequery")
    assert len(requests) == 14  # ceil(200 / 15)
    assert max(r["count"] for r in requests) == 15
    lines = BillQueryLine.objects.filter(batch=batch)
    assert not lines.filter(outcome="").exists(), "a line was left without a result"
    found, no_debt = lines.filter(outcome="found").count(), lines.filter(outcome="no_debt").count()
    assert found + no_debt == 200 and found > 0 and no_debt > 0
    page = operator_client.get(change_url(batch)).content.decode()
    assert f'id="bq-found" class="found">{found}<' in page


def test_batch_list_exports_to_csv(sandbox, institutions, operator_client) -> None:
    batch = BillQueryBatch.objects.create(source="typed", line_count=3, found_count=2)
    response = operator_client.post(
        reverse("admin:billqueries_billquerybatch_changelist"),
        {"action": "export_csv", "index": "0", "_selected_action": [str(batch.pk)]},
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(
        csv.reader(
            io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig")), delimiter=";"
        )
    )
    assert len(rows) == 2 and rows[1][0] == str(batch.pk)


def test_the_batch_page_shows_debt_fees_and_their_sum_as_three_figures(
    sandbox, institutions, run_batch, operator_client
) -> None:
    # "Toplam borç" left out the fees each bill's total includes: one word, two meanings.
    batch = run_batch(
        [line(1, "01345677000"), line(1, "1345600"), line(1, "0134569000"), line(1, "01345699000")]
    )
    debts = [d for ln in batch.lines.prefetch_related("debts") for d in ln.debts.all()]
    fees = sum(d.merchant_profit for d in debts)
    paid = sum(d.total_amount for d in debts)
    assert fees > 0
    assert (batch.debt_total, batch.fee_total, batch.payable_total) == (paid - fees, fees, paid)
    operator_client.cookies["django_language"] = "tr"
    page = operator_client.get(change_url(batch)).content.decode()
    figures = dict(
        re.findall(r'<th>([^<]+)</th><td id="bq-(?:total|fees|payable)"[^>]*>([^<]+)<', page)
    )
    assert figures == {
        "Toplam borç": "₺\u00a0619,00",
        "Hizmet bedelleri": money_text(fees),
        "Ödenecek (borç + hizmet bedeli)": money_text(paid),
    }
    # Each bill's columns use the same words: debt, service fee, to pay.
    assert '<th class="money">Ödenecek</th>' in page and ">TOPLAM<" not in page
    progress = operator_client.get(
        reverse("admin:billqueries_billquerybatch_progress", args=[batch.pk])
    ).json()
    assert progress["payable_total"] == money_text(paid)


def money_text(amount: Decimal) -> str:
    from upstream.l10n.formats import money

    with translation.override("tr"):
        return str(money(amount))
