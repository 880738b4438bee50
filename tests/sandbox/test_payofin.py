"""The Payofin part of the sandbox, over real HTTP (contract: /work/shared/upstreams/payofin.md)."""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal
from typing import Any

import pytest
import requests

from sandbox.core import Ledger
from sandbox.payofin import NO_DEBT_MESSAGE, SUCCESS_MESSAGE, PayofinService, mask_matches
from sandbox.server import start_in_thread

API_KEY = os.environ.get("PAYOFIN_API_KEY", "3f0126be-0000-4000-8000-sandboxapikey")
SECRET_KEY = os.environ.get("PAYOFIN_SECRET_KEY", "3f0126be-0000-4000-8000-sandboxsecret")
AUTH = {"ApiKey": API_KEY, "SecretKey": SECRET_KEY}
AUTH_FAILED = {"result": False, "resultCode": -22, "resultMessage": "Kullanıcı bilgileri hatalı."}
ENTRY_KEYS = [
    "invoiceQueryId",
    "subscriberNo",
    "customerName",
    "invoiceNo",
    "expDate",
    "invoiceAmount",
    "merchantProfit",
    "totalAmount",
    "sootCode",
]


@pytest.fixture(scope="module")
def server():
    srv = start_in_thread(port=0, seed=1)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def fresh(server) -> None:
    # Fresh seeded state, empty ledger, no faults: tests may switch modes and add faults.
    requests.post(f"{server.url}/_sandbox/reset", json={"seed": 1}, timeout=10).raise_for_status()


@pytest.fixture()
def base(server) -> str:
    return f"{server.url}/payofin"


def q(soot: Any, sub: str, ref: str = "REF1", additional: str = "") -> dict[str, Any]:
    return {"sootCode": soot, "subscriberNo": sub, "additionalNo": additional, "firmRefNo": ref}


def multi(base: str, queries: list[dict[str, Any]], **kw: Any) -> requests.Response:
    kw.setdefault("headers", AUTH)
    return requests.post(
        f"{base}/invoices/multipleinvoicequery",
        json={"invoiceQueryList": queries},
        timeout=10,
        **kw,
    )


def state(server) -> dict[str, Any]:
    return requests.get(f"{server.url}/_sandbox/state/payofin", timeout=10).json()


def command(server, data: dict[str, Any]) -> requests.Response:
    return requests.post(f"{server.url}/_sandbox/state/payofin", json=data, timeout=10)


def ledger(server, operation: str = "multipleinvoicequery") -> list[dict[str, Any]]:
    params = {"service": "payofin", "operation": operation}
    return requests.get(f"{server.url}/_sandbox/ledger", params=params, timeout=10).json()


def faults(server, *rules: dict[str, Any]) -> None:
    r = requests.post(f"{server.url}/_sandbox/faults", json={"rules": list(rules)}, timeout=10)
    r.raise_for_status()


def seeded(server, soot: int, *, bills: int | None = None, min_bills: int = 0) -> str:
    """A seeded subscriber number of institution `soot` with exactly/at least so many bills."""
    for sub in state(server)["subscribers"][str(soot)]:
        n = len(sub["bills"])
        if (bills is None and n >= min_bills) or n == bills:
            return sub["subscriberNo"]
    raise AssertionError("no such seeded subscriber")


# --- credentials, IP allow-list -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"ApiKey": API_KEY},
        {"SecretKey": SECRET_KEY},
        {"ApiKey": API_KEY, "SecretKey": "wrong"},
        {"ApiKey": "wrong", "SecretKey": SECRET_KEY},
    ],
)
def test_bad_credentials_are_http_200_minus_22_and_nothing_else(base, server, headers) -> None:
    r = multi(base, [q("1", "01345677000")], headers=headers)
    assert r.status_code == 200
    assert r.json() == AUTH_FAILED
    r = requests.get(f"{base}/invoices/sootlist", headers=headers, timeout=10)
    assert (r.status_code, r.json()) == (200, AUTH_FAILED)
    assert ledger(server) == []


def test_auth_http_401_switch(base, server) -> None:
    assert command(server, {"command": "auth_http_401", "value": True}).status_code == 200
    r = multi(base, [q("1", "01345677000")], headers={"ApiKey": "x", "SecretKey": "y"})
    assert (r.status_code, r.json()) == (401, AUTH_FAILED)
    # Good credentials still work in 401 mode.
    assert multi(base, [q("1", "01345677000")]).json()["invoices"][0]["resultCode"] == 1
    command(server, {"command": "auth_http_401", "value": False})
    r = multi(base, [q("1", "01345677000")], headers={})
    assert (r.status_code, r.json()) == (200, AUTH_FAILED)


def test_ip_allow_list_off_by_default_then_minus_7(base, server) -> None:
    assert state(server)["allowed_ips"] is None
    command(server, {"command": "set_allowed_ips", "ips": ["10.9.9.9"]})
    r = multi(base, [q("1", "01345677000")])
    assert r.status_code == 200
    assert r.json()["result"] is False and r.json()["resultCode"] == -7
    assert set(r.json()) == {"result", "resultCode", "resultMessage"}
    command(server, {"command": "set_allowed_ips", "ips": ["127.0.0.1"]})
    assert multi(base, [q("1", "01345677000")]).json()["invoices"][0]["resultCode"] == 1
    command(server, {"command": "set_allowed_ips", "ips": None})
    assert state(server)["allowed_ips"] is None


def test_bad_commands_are_400(server) -> None:
    assert command(server, {"command": "nope"}).status_code == 400
    assert command(server, {"command": "auth_http_401", "value": "yes"}).status_code == 400
    assert command(server, {"command": "set_allowed_ips", "ips": "127.0.0.1"}).status_code == 400


# --- malformed requests -----------------------------------------------------------------------


def test_more_than_15_queries_refused_whole(base, server) -> None:
    before = state(server)["next_invoice_query_id"]
    r = multi(base, [q("1", "01345677000", f"R{i}") for i in range(16)])
    assert r.status_code == 400
    assert r.json()["result"] is False and r.json()["resultCode"] == -900
    assert "invoices" not in r.json()
    assert ledger(server) == []
    assert state(server)["next_invoice_query_id"] == before  # nothing was queried
    r = multi(base, [q("1", "01345677000", f"R{i}") for i in range(15)])
    assert r.status_code == 200 and len(r.json()["invoices"]) == 15


# The published request sample, verbatim: the array's closing "]" is missing (payofin.md §4).
DOC_SAMPLE = b"""{
  "invoiceQueryList": [
    {
      "sootCode": "1",
      "subscriberNo": "01345677000",
      "additionalNo": "",
      "firmRefNo": "589652454499"
    },
    {
      "sootCode": "1",
      "subscriberNo": "1345600",
      "additionalNo": "",
      "firmRefNo": "589652454499"
    }
}"""


@pytest.mark.parametrize(
    "body",
    [
        DOC_SAMPLE,
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"invoiceQueryList": []}',
        b'{"invoiceQueryList": {"sootCode": "1"}}',
        b'{"invoiceQueryList": "1"}',
        b'{"invoiceQueryList": ["01345677000"]}',
    ],
)
def test_malformed_requests_are_400_minus_900(base, server, body) -> None:
    r = requests.post(
        f"{base}/invoices/multipleinvoicequery",
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["result"] is False and r.json()["resultCode"] == -900
    assert r.json()["resultMessage"]
    assert ledger(server) == []


# --- the multiple query -----------------------------------------------------------------------


def test_doc_sample_answers_like_the_published_response(base) -> None:
    subs = ["01345677000", "01345699000", "0134569000", "1345600"]
    r = multi(base, [q("1", s, "589652454499") for s in subs])  # duplicate firmRefNo accepted
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["invoices"]  # no top-level envelope on success
    inv = body["invoices"]
    assert [e["resultCode"] for e in inv] == [1, 1, 1, -1]
    first = inv[0]
    assert list(first) == ["invoiceList", "result", "resultCode", "resultMessage"]
    assert first["result"] is True and first["resultMessage"] == SUCCESS_MESSAGE
    bill = first["invoiceList"][0]
    assert list(bill) == ENTRY_KEYS
    assert bill["customerName"] == "DE*** ÖZ****"
    assert (bill["invoiceAmount"], bill["merchantProfit"], bill["totalAmount"]) == (560, 2, 562)
    assert inv[2]["invoiceList"][0]["customerName"] == "AB*** FA*******"
    assert inv[3] == {
        "invoiceList": [],
        "result": False,
        "resultCode": -1,
        "resultMessage": NO_DEBT_MESSAGE,
    }


def test_results_in_request_order_with_no_debt_entry_in_the_middle(base, server) -> None:
    no_debt = seeded(server, 10, bills=0)
    one, several = seeded(server, 10, bills=1), seeded(server, 10, min_bills=2)
    r = multi(base, [q("10", one, "A"), q("10", no_debt, "B"), q("10", several, "C")])
    inv = r.json()["invoices"]
    assert [e["resultCode"] for e in inv] == [1, -1, 1]
    assert inv[1] == {
        "invoiceList": [],
        "result": False,
        "resultCode": -1,
        "resultMessage": NO_DEBT_MESSAGE,
    }
    assert {b["subscriberNo"] for b in inv[0]["invoiceList"]} == {one}
    assert {b["subscriberNo"] for b in inv[2]["invoiceList"]} == {several}
    assert len(inv[0]["invoiceList"]) == 1 and len(inv[2]["invoiceList"]) >= 2


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (q("999", "1234567890"), -17),
        (q("abc", "1234567890"), -17),
        (q(None, "1234567890"), -17),
        (q(True, "1234567890"), -17),
        (q("10", ""), -14),
        (q("10", "123456789"), -14),  # CK Boğaziçi: exactly 10 digits
        (q("10", "12345678901"), -14),
        (q("10", "12345A7890"), -14),
        (q("21", "12345678"), -14),  # Başkentgaz: a letter, then 7 digits
        (q("41", "SOX-AB12345"), -14),  # Superonline: literal "SOL-"
        (q("10", "1234567890", ref=""), -15),
        (q("10", "1234567890", ref="1234567890123456"), -15),
        (q("30", "2125550101"), -16),  # Türk Telekom requires additionalNo
        ({"sootCode": "30", "subscriberNo": "2125550101", "firmRefNo": "R"}, -16),
    ],
)
def test_per_entry_validation_codes(base, query, code) -> None:
    inv = multi(base, [q("1", "01345677000"), query]).json()["invoices"]
    assert inv[0]["resultCode"] == 1  # one bad entry does not fail the others
    assert inv[1]["invoiceList"] == [] and inv[1]["result"] is False
    assert inv[1]["resultCode"] == code
    assert set(inv[1]) == {"invoiceList", "result", "resultCode", "resultMessage"}


@pytest.mark.parametrize(
    "query",
    [
        q("10", "1234567890", ref="123456789012345"),  # 15 characters is the limit
        q("30", "2125550101", additional="HZ123456"),
        q("21", "B1234567"),
        q("41", "SOL-AB12345"),
        q("2", "12345678"),
        q("2", "12345678901"),
    ],
)
def test_valid_entries_pass_validation(base, query) -> None:
    entry = multi(base, [query]).json()["invoices"][0]
    assert entry["resultCode"] in (1, -1)


@pytest.mark.parametrize("soot", ["1", 1])
def test_soot_code_string_or_int_returned_as_int(base, soot) -> None:
    entry = multi(base, [q(soot, "01345677000")]).json()["invoices"][0]
    assert entry["resultCode"] == 1
    assert entry["invoiceList"][0]["sootCode"] == 1


def test_invoice_query_ids_fresh_and_strictly_increasing(base, server) -> None:
    several = seeded(server, 20, min_bills=2)
    ids = []
    for _ in range(3):
        inv = multi(base, [q("20", several), q("1", "01345677000")]).json()["invoices"]
        ids += [b["invoiceQueryId"] for e in inv for b in e["invoiceList"]]
    assert len(ids) >= 9
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_bill_fields(base, server) -> None:
    subs = [seeded(server, code, min_bills=1) for code in (1, 10, 30)]
    queries = [q("1", subs[0]), q("10", subs[1]), q("30", subs[2], additional="HZ1")]
    inv = multi(base, queries).json()["invoices"]
    profits = {1: Decimal("2"), 10: Decimal("2.5"), 30: Decimal("1.5")}
    for entry in inv:
        assert entry["resultCode"] == 1
        for bill in entry["invoiceList"]:
            assert list(bill) == ENTRY_KEYS
            amount = Decimal(str(bill["invoiceAmount"]))
            assert amount == amount.quantize(Decimal("0.01"))
            assert Decimal("50") <= amount <= Decimal("3000")
            assert Decimal(str(bill["merchantProfit"])) == profits[bill["sootCode"]]
            total = Decimal(str(bill["totalAmount"]))
            assert total == amount + Decimal(str(bill["merchantProfit"]))
            assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4}", bill["expDate"])
            dt.datetime.strptime(bill["expDate"], "%d.%m.%Y")
            assert isinstance(bill["invoiceNo"], str)
            assert re.fullmatch(r"(\w\*+|\w{2}\*+|\w)( (\w\*+|\w{2}\*+|\w))*", bill["customerName"])


def test_unseeded_valid_numbers_follow_the_hash_rule(base) -> None:
    numbers = [f"{5550000000 + i * 7919}" for i in range(300)]
    codes = []
    first_pass = []
    for chunk in range(0, 300, 15):
        batch = [q("10", n, f"B{chunk}") for n in numbers[chunk : chunk + 15]]
        inv = multi(base, batch).json()["invoices"]
        codes += [e["resultCode"] for e in inv]
        first_pass += inv
    assert set(codes) == {1, -1}
    share = codes.count(1) / len(codes)
    assert 0.5 < share < 0.7  # about 60% with bills
    counts = {len(e["invoiceList"]) for e in first_pass if e["resultCode"] == 1}
    assert counts <= {1, 2, 3} and len(counts) > 1
    # Same number, same outcome and bills; only the invoiceQueryIds are fresh.
    again = multi(base, [q("10", numbers[i]) for i in range(15)]).json()["invoices"]

    def strip(e: dict) -> list:
        return [{k: v for k, v in b.items() if k != "invoiceQueryId"} for b in e["invoiceList"]]

    for old, new in zip(first_pass[:15], again, strict=True):
        assert old["resultCode"] == new["resultCode"]
        assert strip(old) == strip(new)


# --- ledger -----------------------------------------------------------------------------------


def test_ledger_records_each_query_request(base, server) -> None:
    multi(base, [q("1", "01345677000", "R1"), q("1", "1345600", "R2"), q("999", "1", "R3")])
    multi(base, [q(1, "0134569000", "R4")])
    multi(base, [q("1", "01345677000")], headers={})  # refused: not recorded
    entries = ledger(server)
    assert [e["count"] for e in entries] == [3, 1]
    assert entries[0]["firmRefNos"] == ["R1", "R2", "R3"]
    assert entries[0]["subscriberNos"] == ["01345677000", "1345600", "1"]
    assert entries[0]["resultCodes"] == [1, -1, -17]
    assert len(entries[0]["invoiceQueryIds"]) == 1
    assert entries[1]["subscriberNos"] == ["0134569000"]
    assert ledger(server, "invoicequery") == []


# --- single query -----------------------------------------------------------------------------


def test_single_query(base, server) -> None:
    body = {"sootCode": 1, "subscriberNo": "01345677000", "additionalNo": "", "firmRefNo": "X"}
    r = requests.post(f"{base}/invoices/invoicequery", json=body, headers=AUTH, timeout=10)
    assert r.status_code == 200
    data = r.json()
    assert list(data) == ["result", "resultCode", "resultMessage", "invoiceList"]
    assert data["result"] is True and data["resultCode"] == 1
    assert list(data["invoiceList"][0]) == ENTRY_KEYS
    body["subscriberNo"], body["sootCode"] = "1345600", "1"
    data = requests.post(
        f"{base}/invoices/invoicequery", json=body, headers=AUTH, timeout=10
    ).json()
    assert data == {
        "result": False,
        "resultCode": -1,
        "resultMessage": NO_DEBT_MESSAGE,
        "invoiceList": [],
    }
    body["firmRefNo"] = ""
    data = requests.post(
        f"{base}/invoices/invoicequery", json=body, headers=AUTH, timeout=10
    ).json()
    assert data["resultCode"] == -15
    r = requests.post(f"{base}/invoices/invoicequery", json=[body], headers=AUTH, timeout=10)
    assert (r.status_code, r.json()["resultCode"]) == (400, -900)
    assert [e["count"] for e in ledger(server, "invoicequery")] == [1, 1, 1]


# --- catalogue --------------------------------------------------------------------------------


def test_soot_list(base) -> None:
    r = requests.get(f"{base}/invoices/sootlist", headers=AUTH, timeout=10)
    data = r.json()
    assert r.status_code == 200
    assert list(data) == ["result", "resultCode", "resultMessage", "sootList"]
    assert data["result"] is True and data["resultMessage"] == SUCCESS_MESSAGE
    by_code = {s["sootCode"]: s for s in data["sootList"]}
    assert by_code[1]["sootName"] == "İSKİ" and by_code[1]["invoiceType"] == "Su Faturası"
    assert {"Elektrik Faturası", "Doğalgaz Faturası", "Telefon Faturası", "İnternet Faturası"} <= {
        s["invoiceType"] for s in data["sootList"]
    }
    for soot in data["sootList"]:
        assert isinstance(soot["fields"], dict)
        assert set(soot["fields"]) == {
            "title",
            "description",
            "mask",
            "required",
            "additionalNoRequired",
            "partialAmount",
        }
        assert "payofinCommission" not in soot
    assert any(s["fields"]["additionalNoRequired"] for s in data["sootList"])
    masks = {s["fields"]["mask"] for s in data["sootList"]}
    assert {"9999999999", "99999999###", "A9999999"} <= masks


def test_soot_list_by_type_filters(base) -> None:
    url = f"{base}/invoices/sootListByType"

    def names(body: Any) -> list[str]:
        r = requests.post(url, json=body, headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["resultCode"] == 1
        return [s["sootName"] for s in r.json()["sootList"]]

    everything = names({})
    assert len(everything) == 10
    r = requests.post(url, headers=AUTH, timeout=10)  # no body at all: everything too
    assert len(r.json()["sootList"]) == 10
    for soot in r.json()["sootList"]:
        assert re.fullmatch(r"\d+\.\d{2}", soot["payofinCommission"])
        assert re.fullmatch(r"\d+\.\d{2}", soot["totalCommission"])
    assert names({"sootTypeCode": 2, "cityCode": 34}) == ["İSKİ"]
    assert names({"sootTypeCode": "2"}) == ["İSKİ", "ASKİ", "İZSU"]
    assert names({"cityCode": 6, "sootTypeCode": 1}) == ["Enerjisa Başkent"]
    # Nationwide institutions serve every province.
    assert names({"sootTypeCode": 5, "cityCode": 34}) == ["TTNET", "Superonline"]
    assert names({"sootTypeCode": 0, "cityCode": 0}) == everything
    for body in ({"sootTypeCode": 6}, {"sootTypeCode": 2, "cityCode": 200}):
        r = requests.post(url, json=body, headers=AUTH, timeout=10)
        assert r.status_code == 200
        assert r.json()["result"] is False and r.json()["resultCode"] == -23
    r = requests.post(url, json={"cityCode": "Istanbul"}, headers=AUTH, timeout=10)
    assert (r.status_code, r.json()["resultCode"]) == (400, -900)


# --- collections report -----------------------------------------------------------------------


def test_invoice_list(base, server) -> None:
    url = f"{base}/invoices/invoicelist"

    def post(body: Any) -> requests.Response:
        return requests.post(url, json=body, headers=AUTH, timeout=10)

    for body in ({}, {"firstDate": "", "lastDate": "2022-05-10"}, {"firstDate": "2022-05-09"}):
        r = post(body)
        assert r.status_code == 200 and r.json()["resultCode"] == -26
    assert post({"firstDate": "2022-05-01", "lastDate": "2022-05-17"}).json()["resultCode"] == -9
    r = post({"firstDate": "2001-01-01", "lastDate": "2001-01-15"})
    assert r.json()["result"] is False and r.json()["resultCode"] == -11
    today = next(s for s in server.sandbox.services if s.name == "payofin").today  # its day
    body = {"firstDate": (today - dt.timedelta(days=15)).isoformat(), "lastDate": today.isoformat()}
    data = post(body).json()
    assert data["result"] is True and data["resultCode"] == 1 and data["invoiceList"]
    row = data["invoiceList"][0]
    assert set(row) == {
        "invoicePaymentId",
        "invoiceType",
        "sootName",
        "subscriberNo",
        "customerName",
        "invoiceNo",
        "expDate",
        "invoiceAmount",
        "profit",
        "paymentDate",
        "status",
    }
    assert {r["status"] for r in data["invoiceList"]} <= {"Paid", "Cancelled"}
    for bad in ({"firstDate": "09.05.2022", "lastDate": "10.05.2022"},):
        assert post(bad).status_code == 400
    assert post({"firstDate": "2022-05-10", "lastDate": "2022-05-09"}).status_code == 400


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/invoices/SootListByType"),
        ("POST", "/invoices/sootlistbytype"),
        ("POST", "/Invoices/MultipleInvoiceQuery"),
        ("GET", "/INVOICES/SOOTLIST"),
        ("GET", "/invoices/sootlist/"),
    ],
)
def test_paths_are_case_insensitive(base, method, path) -> None:
    body = {"invoiceQueryList": [q("1", "01345677000")]} if "Multiple" in path else {}
    r = requests.request(method, base + path, json=body, headers=AUTH, timeout=10)
    assert r.status_code == 200
    assert r.json().get("resultCode", 1) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/invoices/multipleinvoicequery"),
        ("POST", "/invoices/sootlist"),
        ("GET", "/invoices/invoicelist"),
        ("PUT", "/invoices/invoicequery"),
    ],
)
def test_wrong_method_is_405_minus_900(base, method, path) -> None:
    r = requests.request(method, base + path, headers=AUTH, timeout=10)
    assert r.status_code == 405
    assert r.json()["result"] is False and r.json()["resultCode"] == -900


def test_unknown_path_is_404(base) -> None:
    r = requests.post(f"{base}/invoices/invoicepayment", json={}, headers=AUTH, timeout=10)
    assert r.status_code == 404 and r.json()["resultCode"] == -900


# --- faults -----------------------------------------------------------------------------------


def test_reject_with_match_refuses_only_matched_entries(base, server) -> None:
    rule = {
        "kind": "reject",
        "service": "payofin",
        "operation": "multipleinvoicequery",
        "match": {"subscriberNo": "0134569000"},
        "times": 1,
    }
    faults(server, rule)
    queries = [q("1", "01345677000"), q("1", "0134569000"), q(1, "01345699000")]
    inv = multi(base, queries).json()["invoices"]
    assert [e["resultCode"] for e in inv] == [1, -6, 1]
    assert inv[1]["invoiceList"] == [] and inv[1]["result"] is False
    assert inv[1]["resultMessage"].startswith("Kurum ile bağlantı sorunu")
    assert ledger(server)[0]["resultCodes"] == [1, -6, 1]
    # Used up: the next request is answered normally.
    assert [e["resultCode"] for e in multi(base, queries).json()["invoices"]] == [1, 1, 1]
    rule |= {"message": "-24: Abone başka bankada işlemde", "match": {"sootCode": 1}}
    faults(server, rule)
    inv = multi(base, [q("10", seeded(server, 10, bills=1)), *queries]).json()["invoices"]
    assert [e["resultCode"] for e in inv] == [1, -24, -24, -24]
    assert inv[1]["resultMessage"] == "Abone başka bankada işlemde"
    faults(server, rule | {"message": "Kurum kapalı", "times": None})
    inv = multi(base, queries[:1]).json()["invoices"]
    assert (inv[0]["resultCode"], inv[0]["resultMessage"]) == (-6, "Kurum kapalı")


def test_reject_without_match_is_a_whole_request_failure(base, server) -> None:
    faults(server, {"kind": "reject", "service": "payofin", "times": 2})
    r = multi(base, [q("1", "01345677000")])
    assert r.status_code == 200
    assert r.json() == {
        "result": False,
        "resultCode": -18,
        "resultMessage": "Sistem hatası oluştu.",
    }
    assert ledger(server) == []
    body = {"sootCode": 1, "subscriberNo": "01345677000", "firmRefNo": "X"}
    r = requests.post(f"{base}/invoices/invoicequery", json=body, headers=AUTH, timeout=10)
    assert r.json()["resultCode"] == -18 and r.json()["invoiceList"] == []
    faults(server, {"kind": "reject", "service": "payofin", "message": "-3"})
    assert multi(base, [q("1", "01345677000")]).json()["resultCode"] == -3


def test_status_500_fault(base, server) -> None:
    faults(server, {"kind": "status", "service": "payofin", "status": 503, "times": 1})
    r = multi(base, [q("1", "01345677000")])
    assert r.status_code == 503
    assert r.json() == {
        "result": False,
        "resultCode": -18,
        "resultMessage": "Sistem hatası oluştu.",
    }
    assert ledger(server) == []
    assert multi(base, [q("1", "01345677000")]).status_code == 200


def test_malformed_fault(base, server) -> None:
    faults(server, {"kind": "malformed", "service": "payofin", "operation": "sootlist"})
    r = requests.get(f"{base}/invoices/sootlist", headers=AUTH, timeout=10)
    assert r.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        r.json()
    # Other operations are not hit.
    assert multi(base, [q("1", "01345677000")]).json()["invoices"][0]["resultCode"] == 1


# --- seed determinism -------------------------------------------------------------------------


def test_seed_determinism() -> None:
    a = PayofinService(seed=7, ledger=Ledger()).state()
    b = PayofinService(seed=7, ledger=Ledger()).state()
    c = PayofinService(seed=8, ledger=Ledger()).state()
    assert a == b
    assert a["subscribers"] != c["subscribers"]
    for code, subs in a["subscribers"].items():
        assert len(subs) == 12
        assert {min(len(s["bills"]), 2) for s in subs} == {0, 1, 2}
        amounts = [b["invoiceAmount"] for s in subs for b in s["bills"]]
        assert all(50 <= x <= 3000 for x in amounts), code


def test_same_seed_same_answers_over_http(base, server) -> None:
    queries = [q("10", seeded(server, 10, min_bills=2)), q("20", "123456789")]
    first = multi(base, queries).json()
    requests.post(f"{server.url}/_sandbox/reset", json={"seed": 1}, timeout=10)
    assert multi(base, queries).json() == first  # including the invoiceQueryIds


# --- mask syntax (ASSUMPTION 16) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "value", "ok"),
    [
        ("9999999999", "0123456789", True),
        ("9999999999", "012345678", False),
        ("9999999999", "01234567890", False),
        ("9999999999", "01234x6789", False),
        ("9999999999", "０１２３４５６７８９", False),  # only ASCII digits
        ("99999999###", "12345678", True),
        ("99999999###", "123456789", True),
        ("99999999###", "12345678901", True),
        ("99999999###", "1234567", False),
        ("99999999###", "123456789012", False),
        ("99999999###", "12345678a", False),
        ("A9999999", "B1234567", True),
        ("A9999999", "ç1234567", True),
        ("A9999999", "11234567", False),
        ("A9999999", "B123456", False),
        ("***", "a1Z", True),
        ("***", "a-Z", False),
        ("***", "ab", False),
        ("SOL-*******", "SOL-AB12345", True),
        ("SOL-*******", "SOL_AB12345", False),
        ("SOL-*******", "sol-AB12345", False),
        ("(999) 999 99 99", "(212) 555 01 01", True),
        ("(999) 999 99 99", "2125550101", False),
        ("", "anything at all", True),
        ("", "", True),
        ("9##", "1", True),
        ("9##", "123", True),
        ("9##", "", False),
    ],
)
def test_mask_matches(mask, value, ok) -> None:
    assert mask_matches(mask, value) is ok


@pytest.mark.parametrize("mask", ["#999", "99#9", "9#A"])
def test_optional_digits_only_after_the_required_ones(mask) -> None:
    with pytest.raises(ValueError, match="only after"):
        mask_matches(mask, "1234")
