"""WiseCPClient against a fake transport: the wire format and one test per error mapping rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from billing.client import (
    ISTANBUL,
    WiseCPClient,
    changes_applied,
    format_datetime,
    parse_datetime,
    to_money,
)
from upstream.calls.client import ListRecorder
from upstream.calls.errors import (
    UpstreamAuthError,
    UpstreamRejectedError,
    UpstreamResponseError,
    UpstreamTransportError,
)

from .conftest import load_fixture

API_URL = "https://billing.example.com.tr/api/"
KEY = "test-wisecp-key-do-not-leak"


def make_client(fake_session, *answers, **kwargs):
    session, transport = fake_session(*answers)
    recorder = ListRecorder()
    client = WiseCPClient(
        base_url=API_URL,
        api_key=KEY,
        session=session,
        recorder=recorder,
        sleep=lambda seconds: None,
        max_attempts=kwargs.pop("max_attempts", 3),
        **kwargs,
    )
    return client, transport, recorder


def ok(name: str) -> tuple[int, bytes, dict]:
    return 200, load_fixture(name), {}


def assert_no_secret(recorder: ListRecorder) -> None:
    for exchange in recorder.exchanges:
        assert exchange.request_headers["Apikey"] == "***"
        assert KEY not in json.dumps(exchange.__dict__, default=str)


# Wire format -----------------------------------------------------------------------------------


def test_update_is_a_put_on_the_item_path_with_only_the_given_fields(fake_session) -> None:
    client, transport, recorder = make_client(fake_session, ok("update_invoice_item_ok.json"))
    due = datetime(2023, 12, 20, 20, 59, 59, tzinfo=UTC)  # 23:59:59 in Istanbul

    data = client.update_invoice_item(572, {"description": "Yeni açıklama", "due_date": due})

    [sent] = transport.sent
    assert sent.method == "PUT"
    assert sent.url == API_URL + "Billing/UpdateInvoiceItem/572"
    assert sent.headers["Apikey"] == KEY
    assert sent.headers["Content-Type"].startswith("application/json")
    assert json.loads(sent.body) == {
        "description": "Yeni açıklama",
        "due_date": "2023-12-20 23:59:59",
    }
    assert data["wisecp_id"] == 572
    assert data["owner_id"] == 468
    assert data["due_date"] == datetime(2023, 12, 20, 23, 59, 59, tzinfo=ISTANBUL)
    [exchange] = recorder.exchanges
    assert (exchange.operation, exchange.method, exchange.outcome) == (
        "UpdateInvoiceItem",
        "PUT",
        "ok",
    )
    assert exchange.request_body == {
        "description": "Yeni açıklama",
        "due_date": "2023-12-20 23:59:59",
    }
    assert_no_secret(recorder)


def test_money_goes_out_as_json_numbers_and_a_cleared_due_date_as_the_zero_date(
    fake_session,
) -> None:
    client, transport, _ = make_client(fake_session, ok("update_invoice_item_ok.json"))

    client.update_invoice_item(
        572,
        {"amount": Decimal("1499.90"), "total": Decimal("100"), "due_date": None, "owner_id": 9},
    )

    assert json.loads(transport.sent[0].body) == {
        "amount": 1499.9,
        "total": 100,
        "due_date": "0000-00-00 00:00:00",
        "owner_id": 9,
    }


def test_get_invoice_normalises_float_noise_and_zero_dates(fake_session) -> None:
    client, transport, _ = make_client(fake_session, ok("get_invoice_ok.json"))

    invoice = client.get_invoice(367)

    assert transport.sent[0].method == "GET"
    assert transport.sent[0].url == API_URL + "Billing/GetInvoice/367"
    assert transport.sent[0].headers["Apikey"] == KEY
    assert invoice["tax"] == Decimal("3.78")
    assert invoice["total"] == Decimal("24.78")
    assert invoice["subtotal"] == Decimal("21.00")
    assert str(invoice["total"]) == "24.78"
    assert invoice["refund_date"] is None
    assert invoice["created_at_upstream"] == datetime(2023, 3, 11, 19, 49, tzinfo=ISTANBUL)
    assert (invoice["user_id"], invoice["full_name"], invoice["company_name"]) == (
        2,
        "James Roddy",
        "TEST1 LLC",
    )
    first, second = invoice["items"]
    assert first["attributes"]["type"] == "hosting"
    assert second["due_date"] is None
    assert second["attributes"] == {}  # PHP's [] for an empty object


def test_get_invoices_sends_paging_sort_and_filters(fake_session) -> None:
    client, transport, _ = make_client(fake_session, ok("get_invoices_ok.json"))
    since = datetime(2024, 1, 1, 0, 0, tzinfo=ISTANBUL)

    page = client.get_invoices(page=2, filters={"status": "paid", "created_at_from": since})

    query = requests.utils.urlparse(transport.sent[0].url).query
    params = dict(p.split("=", 1) for p in requests.utils.unquote(query).split("&"))
    assert params == {
        "page": "2",
        "limit": "50",
        "sort": "id",
        "sort_type": "ASC",
        "filter[status]": "paid",
        "filter[created_at_from]": "2024-01-01+00:00:00",
    }
    [invoice] = page["invoices"]
    assert invoice["items"] is None
    assert invoice["total"] == Decimal("24.78")


def test_money_and_dates_helpers() -> None:
    assert to_money(3.779999999999999804600747665972448885440826416015625) == Decimal("3.78")
    assert to_money(2.675) == Decimal("2.68")  # the decimal meant, not the double's expansion
    assert to_money(-0.001) == Decimal("0.00")
    assert to_money(100) == Decimal("100.00")
    assert parse_datetime("0000-00-00 00:00:00") is None
    assert format_datetime(None) == "0000-00-00 00:00:00"
    assert format_datetime(datetime(2024, 1, 31, 21, 0, tzinfo=UTC)) == "2024-02-01 00:00:00"
    item = {"amount": Decimal("12.00"), "due_date": None, "owner_id": 3}
    assert changes_applied(item, {"amount": 12, "due_date": "0000-00-00 00:00:00", "owner_id": 3})
    assert not changes_applied(item, {"owner_id": 4})


# Errors ----------------------------------------------------------------------------------------


def test_error_status_in_a_200_is_a_rejection_with_the_upstream_message(fake_session) -> None:
    client, _, recorder = make_client(fake_session, ok("error_invoice_locked.json"))

    with pytest.raises(UpstreamRejectedError) as caught:
        client.update_invoice_item(572, {"sequence": 2})

    assert "Invoice #367 is paid; its items cannot be changed" in str(caught.value)
    assert not isinstance(caught.value, UpstreamAuthError)
    [exchange] = recorder.exchanges  # a clear no is never retried
    assert exchange.outcome == "rejected"
    assert exchange.upstream_code == ""  # WiseCP has no codes: "error" is the envelope status
    assert exchange.upstream_message == "Invoice #367 is paid; its items cannot be changed"
    assert_no_secret(recorder)


@pytest.mark.parametrize(
    ("status", "fixture", "message"),
    [
        (401, "error_invalid_api_key.json", "Invalid API key"),
        (403, "error_ip_not_allowed.json", "IP address not allowed"),
    ],
)
def test_401_and_403_are_auth_errors(fake_session, status, fixture, message) -> None:
    client, _, recorder = make_client(fake_session, (status, load_fixture(fixture), {}))

    with pytest.raises(UpstreamAuthError) as caught:
        client.get_invoice(367)

    assert message in str(caught.value)
    assert KEY not in str(caught.value)
    assert [e.outcome for e in recorder.exchanges] == ["rejected"]
    assert_no_secret(recorder)


@pytest.mark.parametrize("status", [400, 404])
def test_400_and_404_are_rejections(fake_session, status) -> None:
    client, _, recorder = make_client(
        fake_session, (status, load_fixture("error_item_not_found.json"), {})
    )

    with pytest.raises(UpstreamRejectedError) as caught:
        client.update_invoice_item(999, {"sequence": 1})

    assert "Invoice item not found" in str(caught.value)
    assert not caught.value.in_doubt
    assert len(recorder.exchanges) == 1


def test_5xx_html_is_a_response_error_retried_then_in_doubt_for_a_write(fake_session) -> None:
    html = load_fixture("server_error_502.html")
    client, transport, recorder = make_client(
        fake_session, (502, html, {"Content-Type": "text/html"})
    )

    with pytest.raises(UpstreamResponseError) as caught:
        client.update_invoice_item(572, {"sequence": 2})

    assert "server error (HTTP 502)" in str(caught.value)
    assert caught.value.in_doubt  # a 5xx after a PUT may have been applied
    assert len(transport.sent) == 3
    assert [e.outcome for e in recorder.exchanges] == ["failed", "failed", "in_doubt"]
    assert "502 Bad Gateway" in recorder.exchanges[-1].response_body


def test_malformed_json_in_a_200_is_a_response_error(fake_session) -> None:
    client, transport, recorder = make_client(fake_session, ok("malformed.json"))

    with pytest.raises(UpstreamResponseError) as caught:
        client.get_invoice(367)

    assert "not JSON" in str(caught.value)
    assert len(transport.sent) == 3  # a read is safe to repeat
    assert [e.outcome for e in recorder.exchanges] == ["failed"] * 3


def test_malformed_json_after_a_put_is_in_doubt_and_not_resent(fake_session) -> None:
    client, transport, recorder = make_client(fake_session, ok("malformed.json"))

    with pytest.raises(UpstreamResponseError) as caught:
        client.update_invoice_item(572, {"sequence": 2})

    assert caught.value.in_doubt
    assert len(transport.sent) == 1
    assert [e.outcome for e in recorder.exchanges] == ["in_doubt"]


def test_successful_without_data_of_the_right_shape_is_a_response_error(fake_session) -> None:
    body = json.dumps({"status": "successful", "data": {"id": "x"}})
    client, _, _ = make_client(fake_session, (200, body, {}), max_attempts=1)

    with pytest.raises(UpstreamResponseError) as caught:
        client.update_invoice_item(572, {"sequence": 2})

    assert "cannot read" in str(caught.value)


def test_envelope_without_status_is_a_response_error(fake_session) -> None:
    client, _, _ = make_client(fake_session, (200, '{"data": {}}', {}), max_attempts=1)

    with pytest.raises(UpstreamResponseError):
        client.get_invoice(367)


def test_read_timeout_on_a_put_is_in_doubt_and_not_resent(fake_session) -> None:
    client, transport, recorder = make_client(
        fake_session, requests.exceptions.ReadTimeout("read timed out")
    )

    with pytest.raises(UpstreamTransportError) as caught:
        client.update_invoice_item(572, {"sequence": 2})

    assert caught.value.in_doubt
    assert "did not answer in time" in str(caught.value)
    assert len(transport.sent) == 1  # settled by reading back, never resent blindly
    assert [e.outcome for e in recorder.exchanges] == ["in_doubt"]
    assert_no_secret(recorder)


def test_refused_connection_is_not_in_doubt(fake_session) -> None:
    from urllib3.exceptions import NewConnectionError

    refused = requests.exceptions.ConnectionError(NewConnectionError(None, "refused"))
    client, _, _ = make_client(fake_session, refused, max_attempts=1)

    with pytest.raises(UpstreamTransportError) as caught:
        client.update_invoice_item(572, {"sequence": 2})

    assert not caught.value.in_doubt
