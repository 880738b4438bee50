"""PaynetClient against a fake transport: the wire format of paynet.md and every error mapping."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from subscriptions.client import PaynetClient, from_kurus, to_kurus
from subscriptions.models import InvoiceStatus
from tests.fakes import FakeTransport, fake_session
from upstream.calls.client import ListRecorder
from upstream.calls.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamResponseError,
    UpstreamTransportError,
)

SECRET = "sck_pcs_0123456789abcdefSECRET"
BASE = "https://pts-api.paynet.test"
SUB_ID = "68bdfa37-65cd-4481-b14a-90aa731ccf3b"
OK_MESSAGE = "Başarılı Islem"


def ok(**extra: Any) -> tuple[int, dict[str, Any]]:
    # List answers carry their records in `data` (or `Data`): an empty list unless given.
    records = {} if {"data", "Data"} & set(extra) else {"data": []}
    return 200, {"object_name": "x", "code": 0, "message": OK_MESSAGE, **records, **extra}


def error_object(status: int, type_: str, message: str, result_code: int) -> tuple[int, dict]:
    return status, {"type": type_, "message": message, "code": status, "result_code": result_code}


@dataclass
class Rig:
    client: PaynetClient
    transport: FakeTransport
    recorder: ListRecorder
    sleeps: list[float] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.transport.sent)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.transport.sent[index].body)


def rig(responder: Callable | list, **kwargs: Any) -> Rig:
    session, transport = fake_session(responder)
    recorder = ListRecorder()
    sleeps: list[float] = []
    options = {"max_attempts": 3, "backoff_base": 0.5, "backoff_cap": 8.0, **kwargs}
    client = PaynetClient(
        base_url=BASE,
        secret_key=SECRET,
        session=session,
        recorder=recorder,
        sleep=sleeps.append,
        **options,
    )
    return Rig(client, transport, recorder, sleeps)


def invoice_row(n: int) -> dict[str, Any]:
    return {
        "invoice_id": 100 + n,
        "invoice_no": str(11400000 + n),
        "subscription_id": SUB_ID,
        "reference_no": "90000600",
        "amount": 28898,
        "agent_amount": 2926,
        "company_amount": 25972,
        "currency": "TRY",
        "val_date": "03.10.2017 10:32:24",
        "status": 0,
    }


# --- the wire format -----------------------------------------------------------------------

VAL_DATE = datetime(2017, 10, 3, 7, 32, 24, tzinfo=UTC)  # 10:32:24 in Istanbul (UTC+3)

OPERATIONS = [
    pytest.param(
        "invoice_status_update",
        lambda c: c.invoice_status_update(status=4, invoice_no="11400505"),
        {"invoice_id": "", "invoice_no": "11400505", "status": 4},
        id="invoice_status_update",
    ),
    pytest.param(
        "invoices_status_update_all",
        lambda c: c.invoices_status_update_all(status=5, subscription_id=SUB_ID),
        {"subscription_id": SUB_ID, "status": 5},
        id="invoices_status_update_all",
    ),
    pytest.param(
        "create_invoice",
        lambda c: c.create_invoice(
            reference_no="90000600",
            val_date=VAL_DATE,
            amount=Decimal("288.98"),
            agent_amount=Decimal("29.26"),
            company_amount=Decimal("259.72"),
            invoice_no="11400556",
        ),
        {
            "reference_no": "90000600",
            "company_amount": 25972,
            "agent_amount": 2926,
            "amount": 28898,
            "currency": "TRY",
            "val_date": "03.10.2017 10:32:24",
            "invoice_no": "11400556",
        },
        id="create_invoice",
    ),
    pytest.param(
        "list",
        lambda c: c.subscription_list(datab=date(2016, 2, 1), datbi=date(2016, 2, 29)),
        {"datab": "01.02.2016", "datbi": "29.02.2016", "limit": 100, "starting_after": 0},
        id="list",
    ),
    pytest.param(
        "subscription_detail",
        lambda c: c.subscription_detail(reference_no="90003272"),
        {"reference_no": "90003272"},
        id="subscription_detail",
    ),
    pytest.param(
        "invoice_list",
        lambda c: c.invoice_list(subscription_id=SUB_ID),
        {"subscription_id": SUB_ID, "limit": 100, "starting_after": 0},
        id="invoice_list",
    ),
]


@pytest.mark.parametrize(("operation", "call", "expected_body"), OPERATIONS)
def test_each_operation_posts_json_to_its_own_path(operation, call, expected_body):
    r = rig([ok()])

    call(r.client)

    (sent,) = r.transport.sent
    assert sent.method == "POST"
    assert sent.url == f"{BASE}/v1/subscription/{operation}"
    assert sent.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert r.body() == expected_body


@pytest.mark.parametrize(("operation", "call", "expected_body"), OPERATIONS)
def test_every_request_carries_the_raw_secret_after_basic(operation, call, expected_body):
    r = rig([ok()])

    call(r.client)

    # paynet.md §1: the raw key, not base64(key:) as some third-party integrations send.
    assert r.transport.sent[0].headers["Authorization"] == f"Basic {SECRET}"


def test_recorded_request_headers_hide_the_secret():
    r = rig([ok()])

    r.client.invoice_status_update(status=5, invoice_no="11400505")

    (exchange,) = r.recorder.exchanges
    assert exchange.request_headers["Authorization"] == "***"
    assert SECRET not in json.dumps(exchange.request_headers)


def test_base_url_with_trailing_slash_gives_the_same_path():
    session, transport = fake_session([ok()])
    client = PaynetClient(base_url=BASE + "/", secret_key=SECRET, session=session)

    client.invoice_list(reference_no="90000600")

    assert transport.sent[0].url == f"{BASE}/v1/subscription/invoice_list"


def test_status_goes_out_as_a_json_integer():
    r = rig([ok()])

    r.client.invoice_status_update(status=InvoiceStatus.CANCEL, invoice_id="120")

    status = r.body()["status"]
    assert status == 5 and type(status) is int


def test_amounts_go_out_as_integer_kurus_not_strings_or_decimals():
    r = rig([ok()])

    r.client.create_invoice(
        subscription_id=SUB_ID,
        val_date=VAL_DATE,
        amount=Decimal("288.98"),
        agent_amount=Decimal("29.26"),
        company_amount=Decimal("259.72"),
    )

    body = r.body()
    assert (body["amount"], body["company_amount"], body["agent_amount"]) == (28898, 25972, 2926)
    assert all(type(body[k]) is int for k in ("amount", "company_amount", "agent_amount"))
    assert body["subscription_id"] == SUB_ID and "reference_no" not in body
    assert "invoice_no" not in body


def test_optional_shares_are_left_out_when_not_given():
    r = rig([ok()])

    r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("10"))

    assert r.body()["amount"] == 1000
    assert "agent_amount" not in r.body() and "company_amount" not in r.body()


def test_kurus_conversion_round_trips_and_refuses_fractions_of_a_kurus():
    assert to_kurus(Decimal("288.98")) == 28898
    assert to_kurus(Decimal("0.01")) == 1
    assert from_kurus(28898) == Decimal("288.98")
    assert from_kurus("1000") == Decimal("10.00")
    with pytest.raises(ValueError, match="more than two decimals"):
        to_kurus(Decimal("10.005"))


def test_amount_with_a_fraction_of_a_kurus_is_refused_before_anything_is_sent():
    r = rig([ok()])

    with pytest.raises(ValueError):
        r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1.001"))

    assert r.attempts == 0


def test_val_date_is_istanbul_wall_time_from_an_aware_utc_datetime():
    r = rig([ok()])

    # 22:15 UTC on 31 Dec is already 1 Jan in Istanbul.
    r.client.create_invoice(
        subscription_id=SUB_ID,
        val_date=datetime(2024, 12, 31, 22, 15, 5, tzinfo=UTC),
        amount=Decimal("1"),
    )

    assert r.body()["val_date"] == "01.01.2025 01:15:05"


def test_list_date_filters_are_day_month_year():
    r = rig([ok(data=[], has_more=False)])

    list(r.client.iter_subscriptions(datab=date(2016, 2, 1), datbi=date(2024, 12, 9)))

    assert (r.body()["datab"], r.body()["datbi"]) == ("01.02.2016", "09.12.2024")


def test_paging_follows_has_more_with_a_starting_after_row_index():
    rows = [invoice_row(n) for n in range(250)]

    def responder(request):
        body = json.loads(request.body)
        start, limit = body["starting_after"], body["limit"]
        page = rows[start : start + limit]
        return ok(data=page, has_more=start + limit < len(rows), total=len(rows))

    r = rig(responder)

    got = list(r.client.iter_invoices(subscription_id=SUB_ID))

    assert [row["invoice_no"] for row in got] == [row["invoice_no"] for row in rows]
    assert [r.body(i)["starting_after"] for i in range(r.attempts)] == [0, 100, 200]


def test_paging_stops_on_an_empty_page_even_if_has_more_says_otherwise():
    r = rig([ok(data=[invoice_row(1)], has_more=True), ok(data=[], has_more=True)])

    assert len(list(r.client.iter_invoices(subscription_id=SUB_ID))) == 1
    assert r.attempts == 2


@pytest.mark.parametrize("key", ["data", "Data"])
def test_record_array_is_read_from_data_or_Data(key):
    r = rig([ok(**{key: [invoice_row(1), invoice_row(2)]}, has_more=False)])

    got = list(r.client.iter_invoices(subscription_id=SUB_ID))

    assert [row["invoice_id"] for row in got] == [101, 102]


def test_ok_answer_gives_the_parsed_body_and_records_code_zero():
    r = rig([ok(total=3)])

    data = r.client.invoice_list(subscription_id=SUB_ID)

    assert data["total"] == 3
    (exchange,) = r.recorder.exchanges
    assert exchange.outcome == "ok"
    assert exchange.status_code == 200
    assert exchange.upstream_code == "0"
    assert exchange.upstream_message == OK_MESSAGE


# --- error mapping -------------------------------------------------------------------------


def test_business_refusal_in_a_200_body_is_rejected_with_code_and_message():
    r = rig([(200, {"object_name": "x", "code": 1, "message": "Silinmiş kayıt değiştirilemez"})])

    with pytest.raises(UpstreamRejectedError) as info:
        r.client.invoice_status_update(status=5, invoice_no="11400505")

    error = info.value
    assert type(error) is UpstreamRejectedError
    assert error.upstream_code == "1"
    assert error.status_code == 200
    assert str(error) == "Paynet refused: Silinmiş kayıt değiştirilemez (code 1)."
    assert error.upstream == "paynet" and error.operation == "invoice_status_update"
    assert error.in_doubt is False
    assert r.attempts == 1
    assert r.recorder.exchanges[0].outcome == "rejected"


def test_code_as_a_numeric_string_is_understood():
    r = rig([(200, {"code": "5", "message": "Bu fatura numarası ile kayıt zaten mevcut"})])

    with pytest.raises(UpstreamRejectedError) as info:
        r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1"))

    assert info.value.upstream_code == "5"


def test_unauthorized_code_in_a_200_body_is_an_auth_error():
    r = rig([(200, {"code": 7, "message": "unauthorized"})])

    with pytest.raises(UpstreamAuthError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert info.value.upstream_code == "7"
    assert "unauthorized" in str(info.value)
    assert r.attempts == 1


@pytest.mark.parametrize(
    ("answer", "code", "text"),
    [
        (
            error_object(400, "invalid_request_error", "Geçersiz durum değeri: 1", 11),
            "11",
            "Paynet rejected the request: Geçersiz durum değeri: 1.",
        ),
        (
            error_object(404, "no_data_error", "Ödeme kaydı bulunamadı", 12),
            "12",
            "Paynet rejected the request: Ödeme kaydı bulunamadı.",
        ),
    ],
    ids=["400", "404"],
)
def test_4xx_error_object_is_rejected_with_result_code_as_upstream_code(answer, code, text):
    r = rig([answer])

    with pytest.raises(UpstreamRejectedError) as info:
        r.client.invoice_status_update(status=4, invoice_no="1")

    assert type(info.value) is UpstreamRejectedError
    assert info.value.upstream_code == code
    assert info.value.status_code == answer[0]
    assert str(info.value) == text
    assert r.attempts == 1


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_errors_and_never_retried(status):
    r = rig([error_object(status, "authorization_error", "API anahtarınız yanlış", 7)])

    with pytest.raises(UpstreamAuthError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert str(info.value) == "Paynet refused our credentials: API anahtarınız yanlış."
    assert info.value.upstream_code == "7"
    assert r.attempts == 1


@pytest.mark.parametrize("body", ["", "<html>Unauthorized</html>"], ids=["empty", "html"])
def test_401_without_an_error_object_is_still_an_auth_error(body):
    r = rig([(401, body, {"Content-Type": "text/html"})])

    with pytest.raises(UpstreamAuthError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert str(info.value) == "Paynet refused our credentials (HTTP 401)."
    assert r.attempts == 1


def test_404_with_an_empty_body_is_a_rejection_not_a_server_fault():
    r = rig([(404, "")])

    with pytest.raises(UpstreamRejectedError) as info:
        r.client.invoice_status_update(status=4, invoice_no="1")

    assert type(info.value) is UpstreamRejectedError
    assert r.attempts == 1


SERVER_ERROR = error_object(500, "api_error", "Beklenmeyen bir hata oluştu", 8)


def test_5xx_on_a_read_is_retried_with_backoff_until_attempts_run_out():
    r = rig([SERVER_ERROR])

    with pytest.raises(UpstreamResponseError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert r.attempts == 3
    assert str(info.value) == ("Paynet had a server error (HTTP 500): Beklenmeyen bir hata oluştu.")
    assert info.value.upstream_code == "8"
    assert info.value.in_doubt is False  # a read changes nothing
    # Full jitter under a doubling cap: [0, 0.5] then [0, 1.0].
    assert len(r.sleeps) == 2
    assert 0 <= r.sleeps[0] <= 0.5 and 0 <= r.sleeps[1] <= 1.0
    assert [e.outcome for e in r.recorder.exchanges] == ["failed"] * 3
    assert [e.attempt for e in r.recorder.exchanges] == [1, 2, 3]


def test_5xx_then_success_returns_the_answer():
    r = rig([SERVER_ERROR, ok(data=[], has_more=False)])

    assert r.client.invoice_list(subscription_id=SUB_ID)["data"] == []
    assert r.recorder.exchanges[-1].outcome == "ok" and r.attempts == 2


def test_5xx_on_an_idempotent_status_update_is_retried():
    r = rig([SERVER_ERROR, ok()])

    r.client.invoice_status_update(status=5, invoice_no="11400505")

    assert r.attempts == 2


def test_5xx_on_create_invoice_is_not_retried_and_is_in_doubt():
    r = rig([SERVER_ERROR])

    with pytest.raises(UpstreamResponseError) as info:
        r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1"))

    assert r.attempts == 1
    assert r.sleeps == []
    assert info.value.in_doubt is True
    assert r.recorder.exchanges[0].outcome == "in_doubt"


def test_5xx_with_an_html_body_is_a_response_error():
    r = rig([(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"})])

    with pytest.raises(UpstreamResponseError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert str(info.value) == "Paynet had a server error (HTTP 502)."  # the code once, a full stop
    assert r.attempts == 3


def test_read_timeout_on_a_read_is_retried():
    r = rig([requests.exceptions.ReadTimeout("read timed out"), ok(data=[])])

    r.client.invoice_list(subscription_id=SUB_ID)

    assert r.attempts == 2


@pytest.mark.parametrize(
    ("operation", "call"),
    [
        (
            "create_invoice",
            lambda c: c.create_invoice(
                subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1")
            ),
        ),
        ("invoice_status_update", lambda c: c.invoice_status_update(status=5, invoice_no="1")),
        (
            "invoices_status_update_all",
            lambda c: c.invoices_status_update_all(status=5, subscription_id=SUB_ID),
        ),
    ],
)
def test_read_timeout_on_a_write_is_in_doubt_and_never_resent_blindly(operation, call):
    r = rig([requests.exceptions.ReadTimeout("read timed out"), ok()])

    with pytest.raises(UpstreamTransportError) as info:
        call(r.client)

    error = info.value
    assert error.sent is True
    assert error.in_doubt is True
    assert str(error) == (
        "Paynet did not answer in time; the change may or may not have been applied."
    )
    # The request may have been applied: the caller reads back instead of sending again.
    assert r.attempts == 1
    assert r.recorder.exchanges[0].outcome == "in_doubt"


def test_connection_dropped_after_sending_a_write_is_in_doubt():
    dropped = requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    r = rig([dropped, ok()])

    with pytest.raises(UpstreamTransportError) as info:
        r.client.invoice_status_update(status=5, invoice_no="1")

    assert info.value.sent is True and info.value.in_doubt is True
    assert str(info.value) == "Paynet closed the connection without an answer."
    assert r.attempts == 1


def refused() -> requests.exceptions.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111]")
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/", reason))


def test_refused_connection_never_reached_paynet_so_even_a_create_is_retried():
    r = rig([refused(), refused(), ok()])

    r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1"))

    assert r.attempts == 3
    assert [e.outcome for e in r.recorder.exchanges] == ["failed", "failed", "ok"]


def test_a_502_then_refused_connections_stay_in_doubt():
    # The 502 may follow an applied write; the refused retries that follow say nothing of it.
    r = rig([(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"}), refused()])

    with pytest.raises(UpstreamTransportError) as info:
        r.client.invoice_status_update(status=5, invoice_no="11400505")

    assert info.value.sent is False
    assert info.value.in_doubt is True
    assert r.attempts == 3
    assert [e.may_have_applied for e in r.recorder.exchanges] == [True, False, False]
    assert r.recorder.exchanges[-1].outcome == "in_doubt"


def test_refused_connection_that_never_recovers_is_not_in_doubt():
    r = rig([refused()])

    with pytest.raises(UpstreamTransportError) as info:
        r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1"))

    assert info.value.sent is False
    assert info.value.in_doubt is False
    assert str(info.value) == ("Paynet could not be reached (connection refused or DNS failure).")
    assert r.attempts == 3


def test_a_real_closed_port_is_a_refused_connection_and_is_retried():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recorder = ListRecorder()
    sleeps: list[float] = []
    client = PaynetClient(
        base_url=f"http://127.0.0.1:{port}/paynet",
        secret_key=SECRET,
        session=requests.Session(),
        recorder=recorder,
        sleep=sleeps.append,
        max_attempts=3,
        connect_timeout=1,
    )

    with pytest.raises(UpstreamTransportError) as info:
        client.invoice_status_update(status=5, invoice_no="1")

    assert info.value.sent is False and info.value.in_doubt is False
    assert len(recorder.exchanges) == 3 and len(sleeps) == 2
    assert SECRET not in str(info.value)


def test_connect_timeout_never_sent_the_request():
    r = rig([requests.exceptions.ConnectTimeout("connect timed out"), ok()])

    r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1"))

    assert r.attempts == 2


@pytest.mark.parametrize("header", ["Retry-After", "retry-after"])
def test_429_waits_as_long_as_retry_after_says_then_sends_again(header):
    r = rig([(429, {"message": "Too Many Requests"}, {header: "2"}), ok()])

    # Even a create: 429 means the request was not processed.
    r.client.create_invoice(subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1"))

    assert r.sleeps == [2.0]
    assert r.attempts == 2


def test_429_asking_for_longer_than_the_backoff_cap_gives_up_instead_of_retrying_early():
    r = rig([(429, {"message": "Too Many Requests"}, {"Retry-After": "30"}), ok()])

    with pytest.raises(UpstreamResponseError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert str(info.value) == "Paynet asks us to slow down (HTTP 429)."
    assert info.value.retry_after == 30
    assert info.value.in_doubt is False
    assert r.sleeps == [] and r.attempts == 1


@pytest.mark.parametrize(
    ("operation", "call", "attempts", "in_doubt"),
    [
        ("invoice_list", lambda c: c.invoice_list(subscription_id=SUB_ID), 3, False),
        (
            "create_invoice",
            lambda c: c.create_invoice(
                subscription_id=SUB_ID, val_date=VAL_DATE, amount=Decimal("1")
            ),
            1,
            True,
        ),
    ],
)
def test_malformed_json_is_an_untrusted_answer(operation, call, attempts, in_doubt):
    r = rig([(200, b'{"status": "succ<html>Gateway')])

    with pytest.raises(UpstreamResponseError) as info:
        call(r.client)

    assert str(info.value) == "Paynet answered with a body that is not JSON (HTTP 200)."
    assert r.attempts == attempts
    assert info.value.in_doubt is in_doubt
    assert r.recorder.exchanges[-1].response_body == '{"status": "succ<html>Gateway'


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"object_name": "x", "message": "?"}, "Paynet answered without a result code."),
        ([1, 2, 3], "Paynet answered with an unexpected body (HTTP 200)."),
        ("", "Paynet answered with an unexpected body (HTTP 200)."),
    ],
    ids=["no-code", "a-list", "empty"],
)
def test_200_of_the_wrong_shape_is_an_untrusted_answer(body, text):
    r = rig([(200, body)])

    with pytest.raises(UpstreamResponseError) as info:
        r.client.invoice_list(subscription_id=SUB_ID)

    assert str(info.value) == text


ERROR_CASES = [
    (200, {"code": 1, "message": "no"}),
    (200, {"code": 7, "message": "unauthorized"}),
    error_object(400, "invalid_request_error", "bad", 11),
    error_object(401, "authorization_error", "API anahtarınız yanlış", 7),
    SERVER_ERROR,
    (429, {"message": "Too Many Requests"}, {"Retry-After": "1"}),
    (200, b"not json"),
    requests.exceptions.ReadTimeout("HTTPSConnectionPool read timed out"),
    refused(),
]


@pytest.mark.parametrize("answer", ERROR_CASES)
def test_no_error_text_or_recorded_exchange_holds_the_secret(answer):
    r = rig([answer], max_attempts=1)

    with pytest.raises(UpstreamError) as info:
        r.client.invoice_status_update(status=5, invoice_no="1")

    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    for exchange in r.recorder.exchanges:
        assert SECRET not in json.dumps(exchange.request_headers)
        assert SECRET not in exchange.error
    assert info.value.exchange.call_id is None  # no DB recorder here; nothing to point at


def test_a_list_answer_without_its_records_is_untrusted_and_recorded_as_failed():
    body = {"object_name": "x", "code": 0, "message": OK_MESSAGE, "has_more": False}
    r = rig([(200, body)] * 3)

    with pytest.raises(UpstreamResponseError) as info:
        list(r.client.iter_invoices(subscription_id=SUB_ID))

    assert str(info.value) == "Paynet answered without the list of records."
    assert [e.outcome for e in r.recorder.exchanges] == ["failed"] * 3
