"""PayofinClient against a fake transport: exact wire shapes, one test per mapping rule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import requests

from billqueries.client import FAILED, FOUND, NO_DEBT, BillQuery
from upstream.calls.errors import (
    UpstreamAuthError,
    UpstreamRejectedError,
    UpstreamResponseError,
    UpstreamTransportError,
)
from upstream.calls.log import DbCallRecorder
from upstream.models import UpstreamCall

from .conftest import API_KEY, SECRET_KEY, load_fixture


def queries(*subscribers: str, soot_code: int = 1) -> list[BillQuery]:
    return [
        BillQuery(soot_code, sub, "", f"REF{i:03d}") for i, sub in enumerate(subscribers, start=1)
    ]


SAMPLE_QUERIES = queries("01345677000", "1345600", "0134569000")


def test_sends_the_documented_request(fake_client) -> None:
    client, transport = fake_client((200, load_fixture("multipleinvoicequery_sample")))
    client.multiple_invoice_query(SAMPLE_QUERIES)
    sent = transport.sent[0]
    assert sent.method == "POST"
    assert sent.url == "https://payofin.test/invoices/multipleinvoicequery"
    assert sent.headers["ApiKey"] == API_KEY and sent.headers["SecretKey"] == SECRET_KEY
    assert transport.bodies()[-1] == {
        "invoiceQueryList": [
            {"sootCode": "1", "subscriberNo": s, "additionalNo": "", "firmRefNo": f"REF00{i}"}
            for i, s in enumerate(["01345677000", "1345600", "0134569000"], start=1)
        ]
    }


def test_results_match_queries_by_position_with_no_debt_in_the_middle(fake_client) -> None:
    client, _ = fake_client((200, load_fixture("multipleinvoicequery_sample")))
    first, middle, last = client.multiple_invoice_query(SAMPLE_QUERIES)
    assert first.outcome == FOUND and [b.invoice_query_id for b in first.bills] == [615202]
    assert middle.outcome == NO_DEBT and middle.code == -1 and middle.bills == ()
    assert middle.message == "Abone Numarasına Ait Borç Kaydı Bulunmamaktadır"
    assert last.outcome == FOUND and [b.invoice_no for b in last.bills] == ["0000001", "0000002"]


def test_amounts_are_decimal_and_dates_dd_mm_yyyy(fake_client) -> None:
    client, _ = fake_client((200, load_fixture("multipleinvoicequery_sample")))
    bill = client.multiple_invoice_query(SAMPLE_QUERIES)[2].bills[0]
    assert bill.invoice_amount == Decimal("1234.56") and isinstance(bill.invoice_amount, Decimal)
    assert bill.merchant_profit == Decimal("2.00") and bill.total_amount == Decimal("1236.56")
    assert bill.exp_date == date(2022, 5, 10)
    assert bill.customer_name == "AB*** FA*******" and bill.soot_code == 1


def test_pascal_case_entries_under_invoice_query_list(fake_client) -> None:
    client, _ = fake_client((200, load_fixture("multipleinvoicequery_pascalcase")))
    results = client.multiple_invoice_query(
        [
            BillQuery(30, "2125550100", "1", "A1"),
            BillQuery(30, "2125550101", "2", "A2"),
            BillQuery(30, "2125550102", "3", "A3"),
        ]
    )
    assert [r.outcome for r in results] == [NO_DEBT, FOUND, FAILED]
    bill = results[1].bills[0]
    assert (bill.invoice_query_id, bill.invoice_amount, bill.exp_date) == (
        700001,
        Decimal("412.35"),
        date(2025, 2, 1),
    )
    assert results[2].code == -24 and "başka bir bankada" in results[2].failure


def test_shorter_answer_fails_the_unmatched_lines_and_never_guesses(fake_client) -> None:
    client, _ = fake_client((200, load_fixture("multipleinvoicequery_short")))
    results = client.multiple_invoice_query(
        queries("01345677000", "1345600", "0134569000", "01345699000")
    )
    assert [r.outcome for r in results] == [FOUND, NO_DEBT, FAILED, FAILED]
    assert results[2].bills == () and results[2].code is None
    assert "2 results for 4 queries" in results[2].failure
    assert "number 4 of the request" in results[3].failure


def test_an_answer_for_another_subscriber_is_not_used(fake_client) -> None:
    client, _ = fake_client((200, load_fixture("multipleinvoicequery_sample")))
    swapped = queries("0134569000", "1345600", "01345677000")
    first, _middle, last = client.multiple_invoice_query(swapped)
    assert first.outcome == FAILED and first.bills == ()
    assert "not this query" in first.failure
    assert last.outcome == FAILED


def test_more_than_15_queries_are_refused_before_sending(fake_client) -> None:
    client, transport = fake_client((200, {"invoices": []}))
    with pytest.raises(ValueError, match="at most 15"):
        client.multiple_invoice_query(queries(*[str(1000000 + i) for i in range(16)]))
    with pytest.raises(ValueError, match="firmRefNo"):
        client.multiple_invoice_query([BillQuery(1, "1345600", "", "X" * 16)])
    assert transport.sent == []


def test_bad_credentials_code_is_an_auth_error(fake_client) -> None:
    client, transport = fake_client((200, load_fixture("bad_credentials")))
    with pytest.raises(UpstreamAuthError) as caught:
        client.multiple_invoice_query(SAMPLE_QUERIES)
    assert caught.value.upstream_code == "-22" and caught.value.outcome == "rejected"
    assert len(transport.sent) == 1  # never retried


def test_http_401_with_the_envelope_is_an_auth_error(fake_client) -> None:
    client, _ = fake_client((401, load_fixture("bad_credentials")))
    with pytest.raises(UpstreamAuthError):
        client.sootlist()


def test_top_level_failure_is_a_rejection(fake_client) -> None:
    client, transport = fake_client((200, load_fixture("server_error")))
    with pytest.raises(UpstreamRejectedError) as caught:
        client.multiple_invoice_query(SAMPLE_QUERIES)
    assert not isinstance(caught.value, UpstreamAuthError)
    assert "Sistem hatası" in str(caught.value) and caught.value.upstream_code == "-18"
    assert len(transport.sent) == 1


def test_http_400_minus_900_is_a_rejection(fake_client) -> None:
    client, transport = fake_client((400, load_fixture("malformed_request")))
    with pytest.raises(UpstreamRejectedError) as caught:
        client.multiple_invoice_query(SAMPLE_QUERIES)
    assert caught.value.status_code == 400 and caught.value.upstream_code == "-900"
    assert len(transport.sent) == 1


def test_5xx_is_retried_then_a_response_error(fake_client) -> None:
    client, transport = fake_client((503, load_fixture("server_error")))
    with pytest.raises(UpstreamResponseError) as caught:
        client.multiple_invoice_query(SAMPLE_QUERIES)
    assert caught.value.status_code == 503 and caught.value.outcome == "failed"
    assert len(transport.sent) == 3  # UPSTREAM_MAX_ATTEMPTS: a query is safe to resend
    assert caught.value.in_doubt is False


def test_5xx_then_success_is_retried_transparently(fake_client) -> None:
    client, transport = fake_client(
        (502, b"Bad Gateway"), (200, load_fixture("multipleinvoicequery_sample"))
    )
    assert [r.outcome for r in client.multiple_invoice_query(SAMPLE_QUERIES)] == [
        FOUND,
        NO_DEBT,
        FOUND,
    ]
    assert len(transport.sent) == 2


def test_malformed_json_is_a_response_error(fake_client) -> None:
    client, _ = fake_client((200, b'{"invoices": [{"invoiceList": [<html>'))
    with pytest.raises(UpstreamResponseError, match="not JSON"):
        client.multiple_invoice_query(SAMPLE_QUERIES)


def test_answer_without_a_result_list_is_a_response_error(fake_client) -> None:
    client, _ = fake_client((200, {"somethingElse": []}))
    with pytest.raises(UpstreamResponseError, match="without a list"):
        client.multiple_invoice_query(SAMPLE_QUERIES)


def test_timeout_is_a_transport_error_and_never_in_doubt(fake_client) -> None:
    client, transport = fake_client(requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UpstreamTransportError, match="did not answer in time") as caught:
        client.multiple_invoice_query(SAMPLE_QUERIES)
    # A query changes nothing: it was retried, and is not "in doubt".
    assert len(transport.sent) == 3 and caught.value.in_doubt is False


def test_unreadable_entry_fails_only_its_line(fake_client) -> None:
    body = load_fixture("multipleinvoicequery_sample")
    body["invoices"][0]["invoiceList"][0]["expDate"] = "2022/05/10 oops"
    body["invoices"][2] = "garbage"
    client, _ = fake_client((200, body))
    results = client.multiple_invoice_query(SAMPLE_QUERIES)
    assert [r.outcome for r in results] == [FAILED, NO_DEBT, FAILED]
    assert "unreadable" in results[0].failure and "unreadable" in results[2].failure


@pytest.mark.django_db
def test_api_key_and_secret_key_are_redacted_in_the_call_log(fake_client) -> None:
    recorder = DbCallRecorder()
    client, transport = fake_client(
        (200, load_fixture("multipleinvoicequery_sample")), recorder=recorder
    )
    client.multiple_invoice_query(SAMPLE_QUERIES)
    assert transport.sent[0].headers["ApiKey"] == API_KEY  # sent for real ...
    call = UpstreamCall.objects.get()
    assert call.request_headers["ApiKey"] == "***" and call.request_headers["SecretKey"] == "***"
    # ... and nowhere in the record.
    record = str(
        [
            call.request_headers,
            call.request,
            call.response,
            call.url,
            call.error,
            call.upstream_message,
        ]
    )
    assert API_KEY not in record and SECRET_KEY not in record
    assert call.operation == "multipleinvoicequery" and call.outcome == "ok"
    assert call.upstream_message.startswith("3 results")


def test_sootlist_parses_fields_as_object_or_list(fake_client) -> None:
    client, transport = fake_client((200, load_fixture("sootlist_ok")))
    iski, telekom = client.sootlist()
    assert transport.sent[0].method == "GET"
    assert transport.sent[0].url == "https://payofin.test/invoices/sootlist"
    assert (iski.soot_code, iski.name, iski.mask, iski.partial_amount) == (
        1,
        "İSKİ",
        "9999999####",
        True,
    )
    assert telekom.additional_no_required is True and telekom.mask == "9999999999"
