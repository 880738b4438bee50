"""The Paynet simulator over real HTTP: contract, §10 assumptions, ledger, faults, speed."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import pytest
import requests
from freezegun import freeze_time

from sandbox.core import Ledger, Request
from sandbox.paynet import ISTANBUL, PaynetService
from sandbox.server import SandboxHTTPServer, start_in_thread

PATH = "/paynet/v1/subscription/"
OK_MESSAGE = "Başarılı Islem"
DT = "%d.%m.%Y %H:%M:%S"

Call = Callable[..., requests.Response]


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxHTTPServer]:
    # Pinned: a reset after midnight gives the state a test read before it.
    srv = start_in_thread(port=0, seed=1, day=datetime.now(ISTANBUL).date())
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def paynet(server: SandboxHTTPServer) -> PaynetService:
    return next(s for s in server.sandbox.services if s.name == "paynet")


@pytest.fixture(autouse=True)
def fresh(server: SandboxHTTPServer) -> None:
    r = requests.post(f"{server.url}/_sandbox/reset", json={"seed": 1}, timeout=5)
    assert r.status_code == 200


@pytest.fixture
def api(server: SandboxHTTPServer, paynet: PaynetService) -> Iterator[Call]:
    session = requests.Session()
    session.headers["Authorization"] = f"Basic {paynet.secret_key}"

    def call(operation: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return session.post(f"{server.url}{PATH}{operation}", json=body, **kwargs)

    yield call
    session.close()


def control(server: SandboxHTTPServer, method: str, path: str, body: Any = None) -> Any:
    r = requests.request(method, f"{server.url}/_sandbox{path}", json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def state(server: SandboxHTTPServer) -> dict[str, Any]:
    return control(server, "GET", "/state/paynet")


def ledger(server: SandboxHTTPServer, operation: str | None = None) -> list[dict[str, Any]]:
    query = f"?service=paynet&operation={operation}" if operation else "?service=paynet"
    return control(server, "GET", f"/ledger{query}")


def set_status(server: SandboxHTTPServer, invoice_no: str, status: int) -> dict[str, Any]:
    return control(
        server,
        "POST",
        "/state/paynet",
        {"command": "set_status", "invoice_no": invoice_no, "status": status},
    )


def faults(server: SandboxHTTPServer, *rules: dict[str, Any]) -> None:
    control(server, "POST", "/faults", {"rules": list(rules)})


def ok(r: requests.Response, object_name: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object_name"] == object_name
    assert type(body["code"]) is int
    assert body["code"] == 0, body
    assert body["message"] == OK_MESSAGE
    return body


def refused(r: requests.Response, object_name: str, code: int = 1) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object_name"] == object_name
    assert type(body["code"]) is int
    assert body["code"] == code
    assert body["message"]
    return body


def error(r: requests.Response, status: int, type_: str, result_code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == type_
    assert body["code"] == status
    assert body["result_code"] == result_code
    assert body["message"]
    return body


def a_record(server: SandboxHTTPServer, status: int | None = None) -> dict[str, Any]:
    """Some seeded record, forced to `status` when given."""
    record = state(server)["records"][0]
    if status is not None:
        record = set_status(server, record["invoice_no"], status)
    return record


def subscription(server: SandboxHTTPServer, *, fixed: bool) -> dict[str, Any]:
    return next(s for s in state(server)["subscriptions"] if s["is_fixed_price"] is fixed)


def records_of(server: SandboxHTTPServer, subscription_id: str) -> list[dict[str, Any]]:
    return _of(state(server)["records"], subscription_id)


def _of(records: list[dict[str, Any]], subscription_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r["subscription_id"] == subscription_id]


def record_by_no(server: SandboxHTTPServer, invoice_no: str) -> dict[str, Any]:
    return next(r for r in state(server)["records"] if r["invoice_no"] == invoice_no)


# --- authentication and transport ----------------------------------------------------------


def test_missing_authorization_is_401(server: SandboxHTTPServer) -> None:
    r = requests.post(f"{server.url}{PATH}list", json={}, timeout=5)
    assert r.status_code == 401
    assert r.json() == {
        "type": "authorization_error",
        "message": "API anahtarınız yanlış",
        "code": 401,
        "result_code": 7,
    }


def test_wrong_key_is_401(server: SandboxHTTPServer) -> None:
    r = requests.post(
        f"{server.url}{PATH}list",
        json={"datab": "01.01.2020", "datbi": "01.01.2030"},
        headers={"Authorization": "Basic sck_wrong"},
        timeout=5,
    )
    error(r, 401, "authorization_error", 7)


def test_base64_form_is_refused(server: SandboxHTTPServer, paynet: PaynetService) -> None:
    token = base64.b64encode(f"{paynet.secret_key}:".encode()).decode()
    r = requests.post(
        f"{server.url}{PATH}list",
        json={"datab": "01.01.2020", "datbi": "01.01.2030"},
        headers={"Authorization": f"Basic {token}"},
        timeout=5,
    )
    error(r, 401, "authorization_error", 7)


def test_raw_key_is_accepted(api: Call) -> None:
    ok(api("list", {"datab": "01.01.2020", "datbi": "01.01.2030"}), "subscription_list")


def _direct(service: PaynetService, authorization: str, client_ip: str = "127.0.0.1") -> int:
    request = Request(
        method="POST",
        path="/v1/subscription/list",
        query={},
        headers={"Authorization": authorization, "Content-Type": "application/json"},
        body=b'{"datab": "01.01.2020", "datbi": "01.01.2030"}',
        client_ip=client_ip,
    )
    return service.handle(request).status


def test_base64_form_accepted_only_with_the_flag() -> None:
    secret = "sck_test_secret"
    token = base64.b64encode(f"{secret}:".encode()).decode()
    strict = PaynetService(seed=1, ledger=Ledger(), secret_key=secret)
    lenient = PaynetService(seed=1, ledger=Ledger(), secret_key=secret, allow_base64_auth=True)
    assert _direct(strict, f"Basic {token}") == 401
    assert _direct(lenient, f"Basic {token}") == 200
    assert _direct(lenient, f"Basic {secret}") == 200
    assert _direct(lenient, "Basic " + base64.b64encode(b"other:").decode()) == 401


def test_ip_allow_list_answers_403() -> None:
    secret = "sck_test_secret"
    service = PaynetService(seed=1, ledger=Ledger(), secret_key=secret, allowed_ips=["10.0.0.1"])
    assert _direct(service, f"Basic {secret}", client_ip="10.0.0.1") == 200
    assert _direct(service, f"Basic {secret}", client_ip="10.0.0.2") == 403


def test_get_is_405(server: SandboxHTTPServer, paynet: PaynetService) -> None:
    r = requests.get(
        f"{server.url}{PATH}list",
        headers={"Authorization": f"Basic {paynet.secret_key}"},
        timeout=5,
    )
    error(r, 405, "invalid_request_error", 11)


def test_unknown_operation_is_404(api: Call) -> None:
    r = api("detail", {"subscription_id": "x"})
    assert r.status_code == 404
    assert r.json()["code"] == 404


def test_form_encoded_body_is_accepted(api: Call, server: SandboxHTTPServer) -> None:
    record = a_record(server, 0)
    r = api("invoice_status_update", None, data={"invoice_no": record["invoice_no"], "status": "4"})
    ok(r, "subscription_invoice_status_update")
    assert record_by_no(server, record["invoice_no"])["status"] == 4


# --- validation (A3) -----------------------------------------------------------------------

SUB = "__subscription__"
REC = "__record__"


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("invoice_status_update", {"invoice_no": REC}),
        ("invoice_status_update", {"invoice_no": REC, "status": 1}),
        ("invoice_status_update", {"invoice_no": REC, "status": 7}),
        ("invoice_status_update", {"invoice_no": REC, "status": "abc"}),
        ("invoice_status_update", {"invoice_no": REC, "status": 4.0}),
        ("invoice_status_update", {"invoice_id": "", "invoice_no": "", "status": 4}),
        ("invoices_status_update_all", {"status": 4}),
        ("invoices_status_update_all", {"subscription_id": SUB}),
        ("create_invoice", {"subscription_id": SUB, "val_date": "03.10.2026 10:32:24"}),
        ("create_invoice", {"subscription_id": SUB, "amount": 1000}),
        ("create_invoice", {"subscription_id": SUB, "amount": "288.98", "val_date": "03.10.2026"}),
        ("create_invoice", {"subscription_id": SUB, "amount": "288,98", "val_date": "03.10.2026"}),
        ("create_invoice", {"subscription_id": SUB, "amount": 288.98, "val_date": "03.10.2026"}),
        ("create_invoice", {"subscription_id": SUB, "amount": -5, "val_date": "03.10.2026"}),
        ("create_invoice", {"subscription_id": SUB, "amount": "-5", "val_date": "03.10.2026"}),
        ("create_invoice", {"subscription_id": SUB, "amount": True, "val_date": "03.10.2026"}),
        ("create_invoice", {"subscription_id": SUB, "amount": 1000, "val_date": "2026-10-03"}),
        ("create_invoice", {"subscription_id": SUB, "amount": 1000, "val_date": "31.02.2026"}),
        ("create_invoice", {"amount": 1000, "val_date": "03.10.2026"}),
        (
            "create_invoice",
            {
                "subscription_id": SUB,
                "amount": 1000,
                "agent_amount": 100,
                "company_amount": 800,
                "val_date": "03.10.2026",
            },
        ),
        (
            "create_invoice",
            {
                "subscription_id": SUB,
                "amount": 1000,
                "agent_amount": 1001,
                "val_date": "03.10.2026",
            },
        ),
        (
            "create_invoice",
            {"subscription_id": SUB, "amount": 1000, "currency": "USD", "val_date": "03.10.2026"},
        ),
        ("list", {"datab": "01.01.2020"}),
        ("list", {"datab": "2020-01-01", "datbi": "01.01.2030"}),
        ("list", {"datab": "01.01.2020", "datbi": "01.01.2030", "limit": 0}),
        ("list", {"datab": "01.01.2020", "datbi": "01.01.2030", "starting_after": -1}),
        (
            "list",
            {"datab": "01.01.2020", "datbi": "01.01.2030", "starting_after": 1, "ending_before": 5},
        ),
        ("invoice_list", {}),
        ("invoice_list", {"subscription_id": SUB, "invoice_status": "1"}),
        ("invoice_list", {"subscription_id": SUB, "limit": "ten"}),
        ("subscription_detail", {}),
        ("invoice_attempt_list", {"invoice_id": "", "invoice_no": ""}),
    ],
)
def test_bad_request_is_400(
    api: Call, server: SandboxHTTPServer, operation: str, body: dict[str, Any]
) -> None:
    sub = subscription(server, fixed=False)
    record = records_of(server, sub["subscription_id"])[0]
    fill = {SUB: sub["subscription_id"], REC: record["invoice_no"]}
    body = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    before = state(server)["counts"]
    error(api(operation, body), 400, "invalid_request_error", 11)
    assert state(server)["counts"] == before
    assert ledger(server) == []


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"subscription_id": 68bdfa37-65cd}']
)
def test_unparsable_body_is_400(api: Call, raw: bytes) -> None:
    r = api(
        "invoices_status_update_all", None, data=raw, headers={"Content-Type": "application/json"}
    )
    error(r, 400, "invalid_request_error", 11)


# --- unknown identifiers (A4) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("invoice_status_update", {"invoice_no": "99999999", "status": 4}),
        ("invoice_status_update", {"invoice_id": 99999999, "status": 4}),
        ("invoice_status_update", {"invoice_id": "not-an-id", "status": 4}),
        ("invoices_status_update_all", {"reference_no": "00000001", "status": 4}),
        ("invoices_status_update_all", {"subscription_id": str(uuid.UUID(int=1)), "status": 4}),
        ("create_invoice", {"reference_no": "00000001", "amount": 1000, "val_date": "03.10.2026"}),
        ("subscription_detail", {"subscription_id": "68bdfa37-65cd-4481-b14a-90aa731ccf3b"}),
        ("invoice_list", {"reference_no": "00000001"}),
        ("invoice_attempt_list", {"invoice_id": 1, "invoice_no": "1"}),
    ],
)
def test_unknown_identifier_is_404(
    api: Call, server: SandboxHTTPServer, operation: str, body: dict[str, Any]
) -> None:
    error(api(operation, body), 404, "no_data_error", 12)
    assert ledger(server) == []


def test_ids_of_two_different_records_is_404(api: Call, server: SandboxHTTPServer) -> None:
    first, second = state(server)["records"][:2]
    body = {"invoice_id": first["invoice_id"], "invoice_no": second["invoice_no"], "status": 4}
    error(api("invoice_status_update", body), 404, "no_data_error", 12)


def test_record_found_by_invoice_id_alone(api: Call, server: SandboxHTTPServer) -> None:
    record = a_record(server, 0)
    body = {"invoice_id": str(record["invoice_id"]), "invoice_no": "", "status": 5}
    ok(api("invoice_status_update", body), "subscription_invoice_status_update")
    assert record_by_no(server, record["invoice_no"])["status"] == 5


# --- transition rules (A5, A6) -------------------------------------------------------------

ALLOWED = [
    (current, target) for current in (0, 2, 4, 5) for target in (0, 2, 4, 5, 6) if current != target
]
REFUSED = (
    [(current, 3) for current in (0, 2, 3, 4, 5)]
    + [(3, target) for target in (0, 2, 4, 5, 6)]
    + [(6, target) for target in (0, 2, 4, 5)]
)


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed_transition_changes_record(
    api: Call, server: SandboxHTTPServer, current: int, target: int
) -> None:
    record = a_record(server, current)
    r = api(
        "invoice_status_update",
        {"invoice_id": "", "invoice_no": record["invoice_no"], "status": target},
    )
    assert r.json() == {
        "object_name": "subscription_invoice_status_update",
        "code": 0,
        "message": OK_MESSAGE,
    }
    assert record_by_no(server, record["invoice_no"])["status"] == target
    [entry] = ledger(server, "invoice_status_update")
    assert entry["invoice_no"] == record["invoice_no"]
    assert entry["invoice_id"] == record["invoice_id"]
    assert entry["subscription_id"] == record["subscription_id"]
    assert entry["changed"] is True
    assert (entry["status_from"], entry["status_to"]) == (current, target)
    assert entry["request"]["status"] == target


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_forbidden_transition_is_code_1(
    api: Call, server: SandboxHTTPServer, current: int, target: int
) -> None:
    record = a_record(server, current)
    r = api("invoice_status_update", {"invoice_no": record["invoice_no"], "status": target})
    refused(r, "subscription_invoice_status_update", 1)
    assert record_by_no(server, record["invoice_no"])["status"] == current
    assert ledger(server) == []


@pytest.mark.parametrize("status", [0, 2, 4, 5, 6])
def test_same_status_is_idempotent_and_recorded_unchanged(
    api: Call, server: SandboxHTTPServer, status: int
) -> None:
    record = a_record(server, status)
    for _ in range(2):
        r = api("invoice_status_update", {"invoice_no": record["invoice_no"], "status": status})
        ok(r, "subscription_invoice_status_update")
    assert record_by_no(server, record["invoice_no"])["status"] == status
    entries = ledger(server, "invoice_status_update")
    assert [e["changed"] for e in entries] == [False, False]


def test_status_as_numeric_string_is_accepted(api: Call, server: SandboxHTTPServer) -> None:
    record = a_record(server, 0)
    ok(
        api("invoice_status_update", {"invoice_no": record["invoice_no"], "status": "4"}),
        "subscription_invoice_status_update",
    )
    assert record_by_no(server, record["invoice_no"])["status"] == 4


# --- bulk update (A7) ----------------------------------------------------------------------


def _sub_with_every_status(server: SandboxHTTPServer) -> tuple[dict[str, Any], dict[int, str]]:
    data = state(server)
    sub = next(
        s for s in data["subscriptions"] if len(_of(data["records"], s["subscription_id"])) >= 6
    )
    records = _of(data["records"], sub["subscription_id"])
    by_status = {}
    for record, status in zip(records, (0, 2, 3, 4, 5, 6), strict=False):
        set_status(server, record["invoice_no"], status)
        by_status[status] = record["invoice_no"]
    for record in records[6:]:
        set_status(server, record["invoice_no"], 0)
    return sub, by_status


def test_bulk_update_skips_ineligible_records(api: Call, server: SandboxHTTPServer) -> None:
    sub, by_status = _sub_with_every_status(server)
    r = api("invoices_status_update_all", {"subscription_id": sub["subscription_id"], "status": 5})
    assert r.json() == {
        "object_name": "subscription_invoices_status_update_all",
        "code": 0,
        "message": OK_MESSAGE,
    }
    after = {r["invoice_no"]: r["status"] for r in records_of(server, sub["subscription_id"])}
    assert after[by_status[3]] == 3
    assert after[by_status[6]] == 6
    assert {after[by_status[s]] for s in (0, 2, 4, 5)} == {5}
    expected_changed = {
        n for n, s in after.items() if n not in (by_status[3], by_status[6], by_status[5])
    }
    [entry] = ledger(server, "invoices_status_update_all")
    assert set(entry["invoice_nos"]) == expected_changed
    assert entry["changed"] is True
    assert entry["subscription_id"] == sub["subscription_id"]


def test_bulk_update_by_reference_no_with_nothing_to_change(
    api: Call, server: SandboxHTTPServer
) -> None:
    sub = subscription(server, fixed=False)
    for record in records_of(server, sub["subscription_id"]):
        set_status(server, record["invoice_no"], 3)
    before = records_of(server, sub["subscription_id"])
    r = api("invoices_status_update_all", {"reference_no": sub["reference_no"], "status": 4})
    ok(r, "subscription_invoices_status_update_all")
    assert records_of(server, sub["subscription_id"]) == before
    [entry] = ledger(server, "invoices_status_update_all")
    assert entry["changed"] is False
    assert entry["invoice_nos"] == []


def test_bulk_update_to_3_changes_nothing(api: Call, server: SandboxHTTPServer) -> None:
    sub, _ = _sub_with_every_status(server)
    before = records_of(server, sub["subscription_id"])
    ok(
        api("invoices_status_update_all", {"subscription_id": sub["subscription_id"], "status": 3}),
        "subscription_invoices_status_update_all",
    )
    assert records_of(server, sub["subscription_id"]) == before
    [entry] = ledger(server, "invoices_status_update_all")
    assert (entry["changed"], entry["invoice_nos"]) == (False, [])


# --- create_invoice (A8–A13) ---------------------------------------------------------------


def _invoice_list_all(api: Call, **ident: Any) -> list[dict[str, Any]]:
    return ok(api("invoice_list", {**ident, "limit": 100}), "subscription_invoice_list")["data"]


def test_create_invoice_in_kurus_with_split(api: Call, server: SandboxHTTPServer) -> None:
    sub = subscription(server, fixed=False)
    body = {
        "reference_no": sub["reference_no"],
        "company_amount": 25972,
        "agent_amount": 2926,
        "amount": 28898,
        "currency": "TRY",
        "val_date": "03.10.2027 10:32:24",
        "invoice_no": "77700001",
    }
    r = api("create_invoice", body)
    # §5.1: the answer carries no ids.
    assert r.json() == {"object_name": "subscription_invoice", "code": 0, "message": OK_MESSAGE}
    [created] = [
        i
        for i in _invoice_list_all(api, reference_no=sub["reference_no"])
        if i["invoice_no"] == "77700001"
    ]
    assert created["amount"] == 28898
    assert created["agent_amount"] == 2926
    assert created["company_amount"] == 25972
    assert created["val_date"] == "03.10.2027 10:32:24"
    assert created["status"] == 0
    assert created["currency"] == "TRY"
    assert created["subscription_id"] == sub["subscription_id"]
    assert isinstance(created["invoice_id"], int)
    [entry] = ledger(server, "create_invoice")
    assert entry["invoice_no"] == "77700001"
    assert entry["invoice_id"] == created["invoice_id"]
    assert entry["changed"] is True
    assert entry["request"] == body


@pytest.mark.parametrize(
    ("parts", "agent", "company"),
    [
        ({}, 0, 1000),
        ({"agent_amount": "150"}, 150, 850),
        ({"company_amount": 900}, 100, 900),
        ({"agent_amount": 1000}, 1000, 0),
        ({"agent_amount": "", "company_amount": None}, 0, 1000),
    ],
)
def test_create_invoice_split_rules(
    api: Call, server: SandboxHTTPServer, parts: dict[str, Any], agent: int, company: int
) -> None:
    sub = subscription(server, fixed=False)
    body = {
        "subscription_id": sub["subscription_id"],
        "amount": "1000",
        "val_date": "05.01.2027",
        "currency": "TL",
        **parts,
    }
    ok(api("create_invoice", body), "subscription_invoice")
    [entry] = ledger(server, "create_invoice")
    created = record_by_no(server, entry["invoice_no"])
    assert (created["amount"], created["agent_amount"], created["company_amount"]) == (
        1000,
        agent,
        company,
    )
    assert created["val_date"] == "05.01.2027 00:00:00"
    assert created["currency"] == "TRY"


def test_create_invoice_generates_an_8_digit_invoice_no(
    api: Call, server: SandboxHTTPServer
) -> None:
    sub = subscription(server, fixed=False)
    existing = {r["invoice_no"] for r in state(server)["records"]}
    for _ in range(3):
        ok(
            api(
                "create_invoice",
                {
                    "subscription_id": sub["subscription_id"],
                    "amount": 4990,
                    "val_date": "01.02.2027 00:00:00",
                },
            ),
            "subscription_invoice",
        )
    numbers = [e["invoice_no"] for e in ledger(server, "create_invoice")]
    assert len(set(numbers)) == 3
    for number in numbers:
        assert re.fullmatch(r"\d{8}", number)
        assert number not in existing


def test_duplicate_invoice_no_is_code_5(api: Call, server: SandboxHTTPServer) -> None:
    sub = subscription(server, fixed=False)
    taken = records_of(server, sub["subscription_id"])[0]["invoice_no"]
    other = next(
        r for r in state(server)["records"] if r["subscription_id"] != sub["subscription_id"]
    )
    before = state(server)["counts"]
    for invoice_no in (taken, other["invoice_no"]):
        body = {
            "subscription_id": sub["subscription_id"],
            "amount": 1000,
            "val_date": "01.02.2027",
            "invoice_no": invoice_no,
        }
        refused(api("create_invoice", body), "subscription_invoice", 5)
    assert state(server)["counts"] == before
    assert ledger(server) == []


def test_create_invoice_twice_with_same_number(api: Call, server: SandboxHTTPServer) -> None:
    sub = subscription(server, fixed=False)
    body = {
        "subscription_id": sub["subscription_id"],
        "amount": 1000,
        "val_date": "01.02.2027",
        "invoice_no": "55500001",
    }
    ok(api("create_invoice", body), "subscription_invoice")
    refused(api("create_invoice", body), "subscription_invoice", 5)
    assert len(ledger(server, "create_invoice")) == 1


def test_create_invoice_on_fixed_price_is_code_1(api: Call, server: SandboxHTTPServer) -> None:
    sub = subscription(server, fixed=True)
    body = {"subscription_id": sub["subscription_id"], "amount": 1000, "val_date": "01.02.2027"}
    refused(api("create_invoice", body), "subscription_invoice", 1)
    assert ledger(server) == []


# --- invoice_list (A14, A15) ---------------------------------------------------------------


def test_invoice_list_pages_in_val_date_order(api: Call, server: SandboxHTTPServer) -> None:
    subs = state(server)["subscriptions"]
    sub = max(subs, key=lambda s: len(records_of(server, s["subscription_id"])))
    expected = records_of(server, sub["subscription_id"])
    assert len(expected) > 20
    rows: list[dict[str, Any]] = []
    body: dict[str, Any] = {"subscription_id": sub["subscription_id"]}
    pages = 0
    while True:
        page = ok(api("invoice_list", body), "subscription_invoice_list")
        pages += 1
        assert page["limit"] == 10
        assert page["total"] == len(expected)
        assert page["total_count"] == len(page["data"]) <= 10
        assert page["ending_before"] == len(rows)
        rows += page["data"]
        assert page["starting_after"] == len(rows)
        if not page["has_more"]:
            break
        body["starting_after"] = page["starting_after"]
    assert pages == -(-len(expected) // 10)
    assert sorted(r["invoice_no"] for r in rows) == sorted(r["invoice_no"] for r in expected)
    dates = [datetime.strptime(r["val_date"], DT) for r in rows]
    assert dates == sorted(dates)
    assert set(rows[0]) == {
        "invoice_id",
        "invoice_no",
        "subscription_id",
        "reference_no",
        "amount",
        "agent_amount",
        "company_amount",
        "currency",
        "val_date",
        "status",
    }
    assert all(type(r["amount"]) is int for r in rows)


def test_invoice_list_documented_index_examples(api: Call, server: SandboxHTTPServer) -> None:
    made = control(
        server,
        "POST",
        "/state/paynet",
        {"command": "seed_bulk", "subscriptions": 1, "records_per_subscription": 150},
    )
    [sub_id] = made["subscriptions"]
    everything = _invoice_list_all(api, subscription_id=sub_id)
    assert len(everything) == 100  # A14: limit is capped at 100
    rest = ok(
        api("invoice_list", {"subscription_id": sub_id, "limit": 100, "starting_after": 100}),
        "subscription_invoice_list",
    )["data"]
    everything += rest
    assert len(everything) == 150

    page = ok(
        api("invoice_list", {"subscription_id": sub_id, "starting_after": 15, "limit": 15}),
        "subscription_invoice_list",
    )
    assert page["data"] == everything[15:30]
    assert page["has_more"] is True
    page = ok(
        api("invoice_list", {"subscription_id": sub_id, "ending_before": 90, "limit": 15}),
        "subscription_invoice_list",
    )
    assert page["data"] == everything[75:90]
    assert (page["ending_before"], page["starting_after"]) == (75, 90)
    page = ok(
        api("invoice_list", {"subscription_id": sub_id, "starting_after": 145, "limit": "10"}),
        "subscription_invoice_list",
    )
    assert page["data"] == everything[145:]
    assert page["has_more"] is False
    assert page["total"] == 150


def test_invoice_list_status_filter(api: Call, server: SandboxHTTPServer) -> None:
    sub, by_status = _sub_with_every_status(server)
    page = ok(
        api("invoice_list", {"subscription_id": sub["subscription_id"], "invoice_status": "3"}),
        "subscription_invoice_list",
    )
    assert [r["invoice_no"] for r in page["data"]] == [by_status[3]]
    assert page["total"] == 1


def test_invoice_list_of_empty_subscription(api: Call, server: SandboxHTTPServer) -> None:
    made = control(
        server,
        "POST",
        "/state/paynet",
        {"command": "seed_bulk", "subscriptions": 1, "records_per_subscription": 0},
    )
    page = ok(
        api("invoice_list", {"subscription_id": made["subscriptions"][0]}),
        "subscription_invoice_list",
    )
    assert page["data"] == []
    assert page["total"] == 0
    assert page["has_more"] is False


# --- subscription list and detail (A17) ----------------------------------------------------


def test_subscription_list_filters_on_created_date(api: Call, server: SandboxHTTPServer) -> None:
    subs = state(server)["subscriptions"]
    created = sorted(datetime.strptime(s["created_date"], DT) for s in subs)
    first, last = created[5].date(), created[-6].date()
    expected = {
        s["subscription_id"]
        for s in subs
        if first <= datetime.strptime(s["created_date"], DT).date() <= last
    }
    body: dict[str, Any] = {
        "datab": first.strftime("%d.%m.%Y"),
        "datbi": last.strftime("%d.%m.%Y"),
        "limit": 7,
    }
    rows: list[dict[str, Any]] = []
    while True:
        page = ok(api("list", body), "subscription_list")
        assert page["total"] == len(expected)
        rows += page["data"]
        if not page["has_more"]:
            break
        body["starting_after"] = page["starting_after"]
    assert {r["subscription_id"] for r in rows} == expected
    dates = [datetime.strptime(r["created_date"], DT) for r in rows]
    assert dates == sorted(dates)


def test_subscription_list_pages_everything(api: Call, server: SandboxHTTPServer) -> None:
    page = ok(api("list", {"datab": "01.01.2000", "datbi": "31.12.2099"}), "subscription_list")
    assert page["total"] == 40
    assert page["total_count"] == 10
    assert page["has_more"] is True
    one_day = page["data"][0]["created_date"][:10]
    day = ok(api("list", {"datab": one_day, "datbi": one_day}), "subscription_list")
    assert page["data"][0]["subscription_id"] in {s["subscription_id"] for s in day["data"]}
    empty = ok(api("list", {"datab": "01.01.2000", "datbi": "01.01.2001"}), "subscription_list")
    assert (empty["data"], empty["total"], empty["has_more"]) == ([], 0, False)


def test_subscription_list_agent_filter(api: Call, server: SandboxHTTPServer) -> None:
    agent = state(server)["subscriptions"][0]["agent_id"]
    page = ok(
        api(
            "list", {"datab": "01.01.2000", "datbi": "31.12.2099", "agent_id": agent, "limit": 100}
        ),
        "subscription_list",
    )
    assert page["data"]
    assert {s["agent_id"] for s in page["data"]} == {agent}


def test_subscription_detail_fields(api: Call, server: SandboxHTTPServer) -> None:
    sub = subscription(server, fixed=True)
    by_id = ok(
        api("subscription_detail", {"subscription_id": sub["subscription_id"]}),
        "subscription_detail",
    )
    by_ref = ok(
        api("subscription_detail", {"reference_no": sub["reference_no"]}), "subscription_detail"
    )
    assert by_id == by_ref
    for key in (
        "name_surname",
        "amount",
        "interval",
        "interval_count",
        "begin_date",
        "reference_no",
        "end_user_email",
        "end_user_gsm",
        "agent_id",
        "agent_amount",
        "company_amount",
        "end_user_desc",
        "addcomission_to_amount",
        "currency",
        "period",
        "user_name",
        "subscription_id",
        "is_fixed_price",
        "status",
        "created_date",
    ):
        assert key in by_id
    assert by_id["is_fixed_price"] is True
    assert by_id["agent_amount"] + by_id["company_amount"] == by_id["amount"]
    datetime.strptime(by_id["begin_date"], DT)


# --- invoice_attempt_list (A16) ------------------------------------------------------------


def test_attempt_list_of_charged_and_uncharged_records(
    api: Call, server: SandboxHTTPServer
) -> None:
    records = state(server)["records"]
    charged = next(r for r in records if r["status"] == 3)
    body = ok(
        api("invoice_attempt_list", {"invoice_id": charged["invoice_id"], "invoice_no": ""}),
        "subcription_invoice_attempt_list",
    )
    assert body["data"]
    assert set(body["data"][0]) == {
        "attempt_date",
        "amount",
        "is_succeed",
        "xact_id",
        "bank_error_message",
    }
    assert body["data"][-1]["is_succeed"] is True
    assert all(not a["is_succeed"] and a["bank_error_message"] for a in body["data"][:-1])
    failed = next(r for r in records if r["status"] == 4)
    body = ok(
        api("invoice_attempt_list", {"invoice_no": failed["invoice_no"]}),
        "subcription_invoice_attempt_list",
    )
    assert body["data"]
    assert not any(a["is_succeed"] for a in body["data"])
    waiting = next(r for r in records if r["status"] == 0)
    body = ok(
        api(
            "invoice_attempt_list",
            {"invoice_id": waiting["invoice_id"], "invoice_no": waiting["invoice_no"]},
        ),
        "subcription_invoice_attempt_list",
    )
    assert body["data"] == []


# --- seed data -----------------------------------------------------------------------------


def test_seed_is_deterministic() -> None:
    day = date(2026, 3, 14)
    one = PaynetService(seed=1, ledger=Ledger(), today=day).state()
    again = PaynetService(seed=1, ledger=Ledger(), today=day).state()
    other = PaynetService(seed=2, ledger=Ledger(), today=day).state()
    assert one == again
    assert one != other


def test_a_pinned_day_gives_the_same_state_across_midnight() -> None:
    """A test run that crosses midnight caches the state of one reset and compares it with later
    ones: with the day pinned, every service's reset holds the same dates; unpinned, they move."""
    before, after = "2026-12-07 20:59:00+00:00", "2026-12-07 21:01:00+00:00"  # Istanbul midnight
    with freeze_time(before):
        pinned = start_in_thread(port=0, seed=1, day=date(2026, 12, 7))
        loose = start_in_thread(port=0, seed=1)
        try:
            first = {s.name: s.state() for s in pinned.sandbox.services}
            loose_first = {s.name: s.state() for s in loose.sandbox.services}
            with freeze_time(after):
                pinned.sandbox.reset()
                loose.sandbox.reset()
                assert {s.name: s.state() for s in pinned.sandbox.services} == first
                moved = {s.name: s.state() for s in loose.sandbox.services}
                # Each upstream's seed dates hang off Istanbul's day, not the machine's (UTC).
                for name in ("paynet", "payofin"):
                    assert moved[name] != loose_first[name], name
        finally:
            for server in (pinned, loose):
                server.shutdown()
                server.server_close()


def test_reset_restores_the_same_data(api: Call, server: SandboxHTTPServer) -> None:
    before = state(server)
    a_record(server, 6)
    control(server, "POST", "/reset", {"seed": 1})
    assert state(server) == before


def test_seed_data_looks_real(server: SandboxHTTPServer) -> None:
    data = state(server)
    subs, records = data["subscriptions"], data["records"]
    assert len(subs) == 40
    assert {s["is_fixed_price"] for s in subs} == {True, False}
    assert {r["status"] for r in records} == {0, 2, 3, 4, 5, 6}
    assert len({r["invoice_no"] for r in records}) == len(records)
    assert len({r["invoice_id"] for r in records}) == len(records)
    assert any(set(s["name_surname"]) & set("çğıöşüİÇĞÖŞÜ") for s in subs)
    for s in subs:
        assert re.fullmatch(r"\d{8}", s["reference_no"])
        assert uuid.UUID(s["subscription_id"]).version == 4
        assert re.fullmatch(r"5\d{9}", s["end_user_gsm"])
        assert "@" in s["end_user_email"]
        assert 5 <= len(_of(records, s["subscription_id"])) <= 30
    for r in records:
        assert re.fullmatch(r"\d{8}", r["invoice_no"])
        assert r["agent_amount"] + r["company_amount"] == r["amount"] > 0
        assert type(r["amount"]) is int


def test_seed_bulk_adds_volume_deterministically(server: SandboxHTTPServer) -> None:
    command = {
        "command": "seed_bulk",
        "subscriptions": 1000,
        "records_per_subscription": 5,
        "status": 0,
    }
    made = control(server, "POST", "/state/paynet", command)
    assert made["records"] == 5000
    assert len(made["subscriptions"]) == 1000
    data = state(server)
    assert data["counts"]["subscriptions"] == 1040
    new = [r for r in data["records"] if r["subscription_id"] in set(made["subscriptions"])]
    assert len(new) == 5000
    assert {r["status"] for r in new} == {0}
    fixed = {s["subscription_id"] for s in data["subscriptions"] if s["is_fixed_price"]}
    assert not fixed & set(made["subscriptions"])
    control(server, "POST", "/reset", {"seed": 1})
    assert control(server, "POST", "/state/paynet", command) == made


def test_seed_bulk_with_status_and_bad_commands(server: SandboxHTTPServer) -> None:
    made = control(
        server,
        "POST",
        "/state/paynet",
        {"command": "seed_bulk", "subscriptions": 2, "records_per_subscription": 3, "status": 4},
    )
    new = [r for r in state(server)["records"] if r["subscription_id"] in made["subscriptions"]]
    assert [r["status"] for r in new] == [4] * 6
    for bad in (
        {"command": "seed_bulk", "status": 1},
        {"command": "nope"},
        {"command": "set_status", "invoice_no": "1", "status": 0},
    ):
        r = requests.post(f"{server.url}/_sandbox/state/paynet", json=bad, timeout=5)
        assert r.status_code == 400


# --- fault injection through the control endpoints ----------------------------------------


def test_fault_reject(api: Call, server: SandboxHTTPServer) -> None:
    record = a_record(server, 0)
    faults(
        server,
        {
            "kind": "reject",
            "service": "paynet",
            "operation": "invoice_status_update",
            "match": {"invoice_no": record["invoice_no"]},
            "times": 1,
        },
    )
    body = {"invoice_no": record["invoice_no"], "status": 4}
    refused(api("invoice_status_update", body), "subscription_invoice_status_update", 1)
    assert record_by_no(server, record["invoice_no"])["status"] == 0
    assert ledger(server) == []
    ok(api("invoice_status_update", body), "subscription_invoice_status_update")


def test_fault_reject_with_message_on_attempt_list(api: Call, server: SandboxHTTPServer) -> None:
    faults(server, {"kind": "reject", "operation": "invoice_attempt_list", "message": "Hata"})
    record = a_record(server)
    r = api("invoice_attempt_list", {"invoice_no": record["invoice_no"]})
    assert r.json() == {
        "object_name": "subcription_invoice_attempt_list",
        "code": 1,
        "message": "Hata",
    }


def test_fault_reject_with_another_return_code(api: Call, server: SandboxHTTPServer) -> None:
    faults(server, {"kind": "reject", "message": "10: İşlem zaman aşımına uğradı"})
    r = api("list", {"datab": "01.01.2020", "datbi": "01.01.2030"})
    assert r.json() == {
        "object_name": "subscription_list",
        "code": 10,
        "message": "İşlem zaman aşımına uğradı",
    }


def test_fault_status_503(api: Call, server: SandboxHTTPServer) -> None:
    faults(server, {"kind": "status", "status": 503, "service": "paynet"})
    r = api("list", {"datab": "01.01.2020", "datbi": "01.01.2030"})
    assert r.status_code == 503
    assert r.json() == {
        "type": "api_error",
        "message": r.json()["message"],
        "code": 503,
        "result_code": 8,
    }


def test_request_log_notes_every_request_with_its_arrival_time(
    api: Call, server: SandboxHTTPServer
) -> None:
    faults(server, {"kind": "status", "status": 503, "operation": "list", "times": 1})
    before = time.time()
    api("list", {"datab": "01.01.2020", "datbi": "01.01.2030"})  # refused by the fault
    api("list", {"datab": "01.01.2020", "datbi": "01.01.2030"})
    api("detail", {"subscription_id": "1"})

    logged = control(server, "GET", "/requests?service=paynet")
    only_list = control(server, "GET", "/requests?service=paynet&operation=list")

    assert [e["operation"] for e in logged] == ["list", "list", "detail"]
    assert len(only_list) == 2
    assert all(before <= e["at"] <= time.time() for e in logged)
    assert ledger(server) == [], "reads and failures are requests, not writes"
    control(server, "POST", "/reset", {"seed": 1})
    assert control(server, "GET", "/requests") == []


def test_fault_malformed(api: Call, server: SandboxHTTPServer) -> None:
    faults(server, {"kind": "malformed", "service": "paynet"})
    r = api("list", {"datab": "01.01.2020", "datbi": "01.01.2030"})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


def test_fault_drop_after_apply(server: SandboxHTTPServer, paynet: PaynetService) -> None:
    record = a_record(server, 0)
    faults(
        server, {"kind": "drop", "apply": True, "operation": "invoice_status_update", "times": 1}
    )
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{server.url}{PATH}invoice_status_update",
            json={"invoice_no": record["invoice_no"], "status": 5},
            headers={"Authorization": f"Basic {paynet.secret_key}"},
            timeout=5,
        )
    [entry] = ledger(server, "invoice_status_update")
    assert entry["invoice_no"] == record["invoice_no"]
    assert entry["changed"] is True
    assert record_by_no(server, record["invoice_no"])["status"] == 5


def test_fault_timeout(api: Call, server: SandboxHTTPServer) -> None:
    record = a_record(server, 0)
    faults(
        server,
        {"kind": "timeout", "seconds": 0.3, "operation": "invoice_status_update", "times": 1},
    )
    with pytest.raises(requests.Timeout):
        api("invoice_status_update", {"invoice_no": record["invoice_no"], "status": 4}, timeout=0.1)
    assert ledger(server) == []
    assert record_by_no(server, record["invoice_no"])["status"] == 0


def test_keep_alive_has_no_nagle_delay(api: Call, server: SandboxHTTPServer) -> None:
    control(server, "POST", "/latency", {"latency_ms": 0})
    record = a_record(server, 0)
    body = {"invoice_no": record["invoice_no"], "status": 4}
    api("invoice_status_update", body)
    started = time.perf_counter()
    for _ in range(50):
        assert api("invoice_status_update", body).status_code == 200
    assert time.perf_counter() - started < 1.0
