"""The WiseCP part of the sandbox over real HTTP (contract: /work/shared/upstreams/wisecp.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import requests

from sandbox.core import Ledger
from sandbox.server import SandboxHTTPServer, start_in_thread
from sandbox.wisecp import READONLY_API_KEY, ZERO_DATE, WiseCPService

KEY = os.environ.get("WISECP_API_KEY", "sandbox-wisecp-api-key")
TIMEOUT = 5


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxHTTPServer]:
    srv = start_in_thread(port=0, seed=1)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def fresh(server: SandboxHTTPServer) -> None:
    """Every test starts from seed 1: same data, empty ledger, no faults, default flags."""
    r = requests.post(f"{server.url}/_sandbox/reset", json={"seed": 1}, timeout=TIMEOUT)
    assert r.status_code == 200


@pytest.fixture
def api(server: SandboxHTTPServer) -> str:
    return f"{server.url}/wisecp/api/"


def call(
    api: str,
    method: str,
    action: str,
    *,
    key: str | None = KEY,
    json_body: Any = None,
    data: bytes | None = None,
    params: dict[str, Any] | None = None,
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Apikey"] = key
    return requests.request(
        method,
        api + action,
        headers=headers,
        json=json_body,
        data=data,
        params=params,
        timeout=TIMEOUT,
    )


def control(server: SandboxHTTPServer, method: str, path: str, body: Any = None) -> Any:
    r = requests.request(method, f"{server.url}/_sandbox{path}", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def state(server: SandboxHTTPServer) -> dict[str, Any]:
    return control(server, "GET", "/state/wisecp")


def invoice(api: str, invoice_id: int) -> dict[str, Any]:
    r = call(api, "GET", f"Billing/GetInvoice/{invoice_id}")
    assert r.status_code == 200, r.text
    return r.json(parse_float=Decimal)["data"]


def expected_totals(inv: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    """§10.8 computed independently from the returned items."""
    cent = Decimal("0.01")
    subtotal = sum((Decimal(str(i["total"])) for i in inv["items"]), Decimal(0))
    taxable = sum(
        (Decimal(str(i["total"])) for i in inv["items"] if not i["tax_exempt"]), Decimal(0)
    )
    tax = Decimal(0) if inv["taxfree"] else taxable * Decimal(inv["tax_rate"]) / 100
    subtotal = subtotal.quantize(cent, ROUND_HALF_UP)
    tax = tax.quantize(cent, ROUND_HALF_UP)
    return subtotal, tax, subtotal + tax


def money(inv: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    """The invoice's totals with the float noise normalised away, as the product must do (§3)."""

    def norm(value: Any) -> Decimal:
        return Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)

    return norm(inv["subtotal"]), norm(inv["tax"]), norm(inv["total"])


def find_invoice(server: SandboxHTTPServer, **want: Any) -> dict[str, Any]:
    for inv in state(server)["invoices"]:
        if all(inv[k] == v for k, v in want.items()) and inv["items"]:
            return inv
    raise AssertionError(f"no seeded invoice with {want}")


def an_item(server: SandboxHTTPServer, **want: Any) -> dict[str, Any]:
    return find_invoice(server, **want)["items"][0]


def ledger(server: SandboxHTTPServer, **query: str) -> list[dict[str, Any]]:
    r = requests.get(
        f"{server.url}/_sandbox/ledger", params={"service": "wisecp", **query}, timeout=TIMEOUT
    )
    return r.json()


# ---------------------------------------------------------------- access (§10.1-3, §10.14)


@pytest.mark.parametrize("key", [None, "", "wrong-key", "çok-yanlis"])
def test_missing_or_unknown_key_is_401(api: str, key: str | None) -> None:
    r = call(api, "GET", "Billing/GetInvoices", key=key)
    assert r.status_code == 401
    assert r.json() == {"status": "error", "message": "Invalid API key"}


def test_readonly_key_reads_but_cannot_update(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    assert call(api, "GET", "Billing/GetInvoices", key=READONLY_API_KEY).status_code == 200
    r = call(api, "GET", f"Billing/GetInvoice/{item['owner_id']}", key=READONLY_API_KEY)
    assert r.status_code == 200
    r = call(
        api,
        "PUT",
        f"Billing/UpdateInvoiceItem/{item['id']}",
        key=READONLY_API_KEY,
        json_body={"description": "x"},
    )
    assert r.status_code == 403
    assert r.json() == {"status": "error", "message": "No permission for Billing/UpdateInvoiceItem"}
    assert ledger(server) == []


def test_ip_allow_list(api: str, server: SandboxHTTPServer) -> None:
    control(server, "POST", "/state/wisecp", {"command": "set_allowed_ips", "ips": ["10.1.2.3"]})
    r = call(api, "GET", "Billing/GetInvoices")
    assert r.status_code == 403
    assert r.json() == {"status": "error", "message": "IP address not allowed"}
    control(
        server,
        "POST",
        "/state/wisecp",
        {"command": "set_allowed_ips", "ips": ["10.1.2.3", "127.0.0.1"]},
    )
    assert call(api, "GET", "Billing/GetInvoices").status_code == 200
    # A bad address is refused by the control endpoint, not stored.
    r = requests.post(
        f"{server.url}/_sandbox/state/wisecp",
        json={"command": "set_allowed_ips", "ips": ["not-an-ip"]},
        timeout=TIMEOUT,
    )
    assert r.status_code == 400


def test_index_php_path_form(server: SandboxHTTPServer, api: str) -> None:
    inv = find_invoice(server)
    alt = f"{server.url}/wisecp/index.php/api/"
    r = call(alt, "GET", f"Billing/GetInvoice/{inv['id']}")
    assert r.status_code == 200
    assert r.json()["data"]["id"] == inv["id"]
    item = inv["items"][0]
    r = call(alt, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body={"sequence": 9})
    assert r.status_code == 200
    assert r.json()["data"]["sequence"] == 9


# ---------------------------------------------------------------- 404 / 405 / 400 (§10.4-5)


def test_unknown_ids_and_actions_are_404(api: str) -> None:
    cases = [
        ("GET", "Billing/GetInvoice/999999", None, "Invoice not found"),
        ("PUT", "Billing/UpdateInvoiceItem/999999", {"sequence": 1}, "Invoice item not found"),
        ("DELETE", "Billing/DeleteInvoiceItem/999999", None, "Invoice item not found"),
        (
            "POST",
            "Billing/CreateInvoiceItem/999999",
            {"description": "x", "amount": 1},
            "Invoice not found",
        ),
        ("GET", "Billing/GetInvoice/abc", None, "Invoice not found"),
    ]
    for method, action, body, message in cases:
        r = call(api, method, action, json_body=body)
        assert r.status_code == 404, action
        assert r.json() == {"status": "error", "message": message}
    # Action names are case-sensitive (§10.14).
    for action in ("Billing/getinvoices", "Billing/NoSuchAction", "Orders/GetInvoices"):
        r = call(api, "GET", action)
        assert r.status_code == 404
        assert r.json()["status"] == "error"


def test_wrong_verb_is_405(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    for method, action in [
        ("GET", f"Billing/UpdateInvoiceItem/{item['id']}"),
        ("POST", f"Billing/GetInvoice/{item['owner_id']}"),
        ("PUT", f"Billing/CreateInvoiceItem/{item['owner_id']}"),
        ("POST", f"Billing/DeleteInvoiceItem/{item['id']}"),
    ]:
        r = call(api, method, action, json_body={})
        assert r.status_code == 405, action
        assert r.json()["status"] == "error"
    assert ledger(server) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"amount": NaN}',
        b'{"amount": 1e400}',
        b'{"quantity": "2"}',
        b'{"quantity": 1.5}',
        b'{"quantity": true}',
        b'{"quantity": -1}',
        b'{"amount": "10.00"}',
        b'{"total": null}',
        b'{"tax_exempt": "yes"}',
        b'{"tax_exempt": 0}',
        b'{"description": 5}',
        b'{"attributes": ["a"]}',
        b'{"order_id": -3}',
        b'{"due_date": "2024-01-01"}',
        b'{"due_date": "2024-13-01 00:00:00"}',
        b'{"due_date": "01.02.2024 10:00:00"}',
        b'{"owner_id": "301"}',
        b'{"owner_id": 999999}',
    ],
)
def test_update_validation_is_400_and_changes_nothing(
    api: str, server: SandboxHTTPServer, body: bytes
) -> None:
    item = an_item(server)
    r = call(api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", data=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error"
    assert r.json()["message"]
    [owner] = [i for i in state(server)["invoices"] if i["id"] == item["owner_id"]]
    assert owner["items"][0] == item
    assert ledger(server) == []


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 10},  # description is required
        {"description": "", "amount": 10},
        {"description": "x"},  # amount is required
        {"description": "x", "amount": 10, "quantity": -2},
        {"description": "x", "amount": 10, "due_date": "2024-02-30 10:00:00"},
    ],
)
def test_create_validation_is_400(api: str, server: SandboxHTTPServer, body: dict) -> None:
    inv = find_invoice(server)
    r = call(api, "POST", f"Billing/CreateInvoiceItem/{inv['id']}", json_body=body)
    assert r.status_code == 400
    assert r.json()["status"] == "error"
    assert ledger(server) == []


# ---------------------------------------------------------------- item writes (§10.6-8, §10.12)


def test_partial_update_changes_only_sent_fields(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    url = f"Billing/UpdateInvoiceItem/{item['id']}"

    r = call(api, "PUT", url, json_body={"description": "Web Hosting - Yıllık (yeni.com.tr)"})
    assert r.status_code == 200
    assert r.json() == {
        "status": "successful",
        "data": {**item, "description": "Web Hosting - Yıllık (yeni.com.tr)"},
    }

    # amount without total: total becomes the amount (documented default), quantity is ignored.
    r = call(api, "PUT", url, json_body={"amount": 123.45, "quantity": 3})
    data = r.json()["data"]
    assert (data["amount"], data["total"], data["quantity"]) == (123.45, 123.45, 3)

    # neither amount nor total: total unchanged.
    data = call(api, "PUT", url, json_body={"quantity": 1}).json()["data"]
    assert data["total"] == 123.45

    # total alone
    data = call(api, "PUT", url, json_body={"total": 99}).json()["data"]
    assert (data["amount"], data["total"]) == (123.45, 99)

    data = call(
        api,
        "PUT",
        url,
        json_body={
            "tax_exempt": True,
            "order_id": 0,
            "due_date": ZERO_DATE,
            "attributes": {"sample3": "Example test 3"},
            "ignored_unknown_field": 1,
        },
    ).json()["data"]
    assert data == {
        **item,
        "description": "Web Hosting - Yıllık (yeni.com.tr)",
        "amount": 123.45,
        "total": 99,
        "quantity": 1,
        "tax_exempt": True,
        "order_id": 0,
        "due_date": ZERO_DATE,
        "attributes": {"sample3": "Example test 3"},
    }
    # The invoice follows every change (§10.8).
    inv = invoice(api, item["owner_id"])
    assert money(inv) == expected_totals(inv)


def test_move_recomputes_both_invoices(api: str, server: SandboxHTTPServer) -> None:
    invoices = [i for i in state(server)["invoices"] if len(i["items"]) >= 2 and not i["taxfree"]]
    src, dst = invoices[0], invoices[1]
    item = src["items"][0]
    before_src, before_dst = invoice(api, src["id"]), invoice(api, dst["id"])

    r = call(
        api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body={"owner_id": dst["id"]}
    )
    assert r.status_code == 200
    assert r.json()["data"] == {**item, "owner_id": dst["id"]}

    after_src, after_dst = invoice(api, src["id"]), invoice(api, dst["id"])
    assert item["id"] not in [i["id"] for i in after_src["items"]]
    assert item["id"] in [i["id"] for i in after_dst["items"]]
    assert money(after_src) == expected_totals(after_src)
    assert money(after_dst) == expected_totals(after_dst)
    moved = Decimal(str(item["total"]))
    assert money(after_src)[0] == money(before_src)[0] - moved
    assert money(after_dst)[0] == money(before_dst)[0] + moved

    [entry] = ledger(server, operation="UpdateInvoiceItem")
    assert entry["item_id"] == item["id"]
    assert entry["invoice_id"] == dst["id"]
    assert entry["from_invoice_id"] == src["id"]
    assert entry["changed_fields"] == ["owner_id"]


def _only_item(api: str, inv_id: int, **fields: Any) -> dict[str, Any]:
    """Empty the invoice and give it one item."""
    for item in invoice(api, inv_id)["items"]:
        assert call(api, "DELETE", f"Billing/DeleteInvoiceItem/{item['id']}").status_code == 200
    body = {"description": "Web Hosting - Aylık", **fields}
    r = call(api, "POST", f"Billing/CreateInvoiceItem/{inv_id}", json_body=body)
    assert r.status_code == 200, r.text
    return invoice(api, inv_id)


def test_tax_math(api: str, server: SandboxHTTPServer) -> None:
    # The contract's GetInvoice sample: 21 at 18 % -> 3.78 tax, 24.78 total.
    inv18 = find_invoice(server, tax_rate=18, taxfree=False)
    inv = _only_item(api, inv18["id"], amount=21)
    assert money(inv) == (Decimal("21"), Decimal("3.78"), Decimal("24.78"))

    # taxfree invoice: tax 0 even though tax_rate is set.
    free = find_invoice(server, taxfree=True)
    assert free["tax_rate"] > 0
    inv = _only_item(api, free["id"], amount=100)
    assert money(inv) == (Decimal("100"), Decimal("0"), Decimal("100"))

    # tax_exempt lines count in subtotal but not in tax.
    inv20 = find_invoice(server, tax_rate=20, taxfree=False)
    _only_item(api, inv20["id"], amount=100)
    r = call(
        api,
        "POST",
        f"Billing/CreateInvoiceItem/{inv20['id']}",
        json_body={"description": "Bakiye yükleme", "amount": 50, "tax_exempt": True},
    )
    assert r.json()["data"]["tax_exempt"] is True
    inv = invoice(api, inv20["id"])
    assert money(inv) == (Decimal("150"), Decimal("20"), Decimal("170"))

    # Every seeded invoice obeys the same rule.
    for seeded in state(server)["invoices"]:
        assert money(seeded) == expected_totals(seeded), seeded["id"]


def test_float_noise_in_raw_response(api: str, server: SandboxHTTPServer) -> None:
    inv18 = find_invoice(server, tax_rate=18, taxfree=False)
    _only_item(api, inv18["id"], amount=21)
    raw = call(api, "GET", f"Billing/GetInvoice/{inv18['id']}").text
    # Exactly the contract's sample values (§3, §6.1).
    assert '"tax":3.779999999999999804600747665972448885440826416015625' in raw
    assert '"total":24.780000000000001136868377216160297393798828125' in raw
    assert '"subtotal":21,' in raw
    listed = call(api, "GET", "Billing/GetInvoices", params={"filter[id]": inv18["id"]}).text
    assert "3.779999999999999804600747665972448885440826416015625" in listed

    control(server, "POST", "/state/wisecp", {"command": "float_noise", "value": False})
    raw = call(api, "GET", f"Billing/GetInvoice/{inv18['id']}").text
    assert '"tax":3.78,' in raw
    assert '"total":24.78,' in raw


def test_create_and_delete_item(api: str, server: SandboxHTTPServer) -> None:
    inv = find_invoice(server, status="unpaid")
    before = invoice(api, inv["id"])
    last_seq = max(i["sequence"] for i in before["items"])

    r = call(
        api,
        "POST",
        f"Billing/CreateInvoiceItem/{inv['id']}",
        json_body={"description": "SSL Sertifikası", "amount": 599.9},
    )
    assert r.status_code == 200
    created = r.json()["data"]
    assert created == {
        "id": created["id"],
        "sequence": last_seq + 1,
        "owner_id": inv["id"],
        "description": "SSL Sertifikası",
        "quantity": 1,
        "tax_exempt": False,
        "amount": 599.9,
        "total": 599.9,
        "order_id": 0,
        "due_date": ZERO_DATE,
        "attributes": {},
    }
    after = invoice(api, inv["id"])
    assert created["id"] in [i["id"] for i in after["items"]]
    assert money(after)[0] == money(before)[0] + Decimal("599.9")
    assert money(after) == expected_totals(after)

    # No idempotency (§10.13): the same create again is a second item.
    again = call(
        api,
        "POST",
        f"Billing/CreateInvoiceItem/{inv['id']}",
        json_body={"description": "SSL Sertifikası", "amount": 599.9},
    ).json()["data"]
    assert again["id"] != created["id"]

    r = call(api, "DELETE", f"Billing/DeleteInvoiceItem/{created['id']}")
    assert r.status_code == 200
    assert r.json() == {"status": "successful"}
    r = call(api, "DELETE", f"Billing/DeleteInvoiceItem/{created['id']}")
    assert r.status_code == 404
    final = invoice(api, inv["id"])
    assert created["id"] not in [i["id"] for i in final["items"]]
    assert money(final) == expected_totals(final)

    ops = [e["operation"] for e in ledger(server)]
    assert ops == ["CreateInvoiceItem", "CreateInvoiceItem", "DeleteInvoiceItem"]


def test_status_does_not_block_edits_unless_readonly_paid(
    api: str, server: SandboxHTTPServer
) -> None:
    paid = an_item(server, status="paid")
    unpaid = an_item(server, status="unpaid")
    url = f"Billing/UpdateInvoiceItem/{paid['id']}"
    assert call(api, "PUT", url, json_body={"sequence": 7}).status_code == 200

    control(server, "POST", "/state/wisecp", {"command": "readonly_paid", "value": True})
    r = call(api, "PUT", url, json_body={"sequence": 8})
    assert r.status_code == 400
    assert r.json()["status"] == "error"
    assert call(api, "DELETE", f"Billing/DeleteInvoiceItem/{paid['id']}").status_code == 400
    r = call(
        api,
        "POST",
        f"Billing/CreateInvoiceItem/{paid['owner_id']}",
        json_body={"description": "x", "amount": 1},
    )
    assert r.status_code == 400
    # Moving an item into a paid invoice is refused too.
    r = call(
        api,
        "PUT",
        f"Billing/UpdateInvoiceItem/{unpaid['id']}",
        json_body={"owner_id": paid["owner_id"]},
    )
    assert r.status_code == 400
    ok = call(api, "PUT", f"Billing/UpdateInvoiceItem/{unpaid['id']}", json_body={"sequence": 8})
    assert ok.status_code == 200
    assert len(ledger(server)) == 2


# ---------------------------------------------------------------- reads (§10.11)


def test_get_invoice_shape(api: str, server: SandboxHTTPServer) -> None:
    inv = find_invoice(server)
    data = invoice(api, inv["id"])
    assert data["number"] == f"#{inv['id']}"
    assert {"id", "full_name", "type", "address", "email"} <= set(data["user"])
    assert data["items"]
    assert set(data["items"][0]) == {
        "id",
        "sequence",
        "owner_id",
        "description",
        "quantity",
        "tax_exempt",
        "amount",
        "total",
        "order_id",
        "due_date",
        "attributes",
    }
    seqs = [i["sequence"] for i in data["items"]]
    assert seqs == sorted(seqs)


def test_get_invoices_paging_and_filters(api: str, server: SandboxHTTPServer) -> None:
    all_ids = sorted(i["id"] for i in state(server)["invoices"])

    data = call(api, "GET", "Billing/GetInvoices").json()["data"]
    assert (data["page"], data["limit"], data["total"]) == (1, 10, len(all_ids))
    assert [i["id"] for i in data["invoices"]] == sorted(all_ids, reverse=True)[:10]
    entry = data["invoices"][0]
    assert "items" not in entry
    assert set(entry["user"]) == {"id", "full_name"}

    page2 = call(api, "GET", "Billing/GetInvoices", params={"page": 2}).json()["data"]
    assert [i["id"] for i in page2["invoices"]] == sorted(all_ids, reverse=True)[10:20]

    asc = call(
        api, "GET", "Billing/GetInvoices", params={"sort": "id", "sort_type": "ASC", "limit": 5}
    ).json()["data"]
    assert [i["id"] for i in asc["invoices"]] == all_ids[:5]

    big = call(api, "GET", "Billing/GetInvoices", params={"limit": 500}).json()["data"]
    assert big["limit"] == 50
    assert len(big["invoices"]) == 50
    small = call(api, "GET", "Billing/GetInvoices", params={"limit": 0}).json()["data"]
    assert small["limit"] == 1
    assert len(small["invoices"]) == 1

    for status in ("unpaid", "pending", "paid", "refunded", "cancelled"):
        data = call(
            api, "GET", "Billing/GetInvoices", params={"filter[status]": status, "limit": 50}
        ).json()["data"]
        assert data["total"] > 0
        assert {i["status"] for i in data["invoices"]} == {status}

    one = call(api, "GET", "Billing/GetInvoices", params={"filter[id]": all_ids[3]}).json()["data"]
    assert [i["id"] for i in one["invoices"]] == [all_ids[3]]

    ranged = call(
        api,
        "GET",
        "Billing/GetInvoices",
        params={
            "filter[created_at_from]": "2024-01-01 00:00:00",
            "filter[created_at_to]": "2024-06-30 23:59:59",
            "limit": 50,
        },
    ).json()["data"]
    assert ranged["total"] > 0
    assert all("2024-01-01" <= i["created_at"] <= "2024-06-30 23:59:59" for i in ranged["invoices"])

    refunded = call(
        api,
        "GET",
        "Billing/GetInvoices",
        params={"filter[refund_date_to]": "2099-01-01 00:00:00", "limit": 50},
    ).json()["data"]
    assert {i["status"] for i in refunded["invoices"]} == {"refunded"}

    for params in (
        {"filter[status]": "overdue"},
        {"filter[created_at_from]": "2024-01-01"},
        {"limit": "ten"},
        {"sort": "amount"},
        {"sort_type": "UP"},
        {"filter[taxfree]": "yes"},
    ):
        r = call(api, "GET", "Billing/GetInvoices", params=params)
        assert r.status_code == 400, params
        assert r.json()["status"] == "error"


# ---------------------------------------------------------------- ledger, seed


def test_ledger_records_accepted_writes_only(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    call(api, "GET", f"Billing/GetInvoice/{item['owner_id']}")
    call(api, "GET", "Billing/GetInvoices")
    body = {"description": "Alan adı yenileme (example.com.tr)", "sequence": item["sequence"]}
    r = call(api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body=body)
    assert r.status_code == 200
    call(api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body={"quantity": -1})
    [entry] = ledger(server)
    assert entry["service"] == "wisecp"
    assert entry["operation"] == "UpdateInvoiceItem"
    assert entry["request"] == body
    assert entry["item_id"] == item["id"]
    assert entry["invoice_id"] == item["owner_id"]
    assert entry["changed_fields"] == ["description"]


def test_seed_is_deterministic_and_realistic() -> None:
    a = WiseCPService(seed=1, ledger=Ledger()).state()
    b = WiseCPService(seed=1, ledger=Ledger()).state()
    c = WiseCPService(seed=2, ledger=Ledger()).state()
    assert a == b
    assert a["invoices"] != c["invoices"]

    invoices = a["invoices"]
    items = [i for inv in invoices for i in inv["items"]]
    assert 50 <= len(invoices) <= 70
    assert all(300 <= inv["id"] < 1000 and inv["number"] == f"#{inv['id']}" for inv in invoices)
    assert {inv["status"] for inv in invoices} == {
        "unpaid",
        "pending",
        "paid",
        "refunded",
        "cancelled",
    }
    currencies = [inv["currency"] for inv in invoices]
    assert currencies.count("TRY") > len(invoices) / 2
    assert {"USD", "EUR"} <= set(currencies)
    assert {inv["tax_rate"] for inv in invoices} == {18, 20}
    assert any(inv["taxfree"] for inv in invoices)
    assert {inv["user"]["type"] for inv in invoices} == {"individual", "corporate"}
    assert all(1 <= len(inv["items"]) <= 6 for inv in invoices)
    assert any(i["tax_exempt"] for i in items)
    assert any(i["order_id"] == 0 for i in items)
    assert any(i["order_id"] and i["attributes"] for i in items)
    assert any(i["due_date"] == ZERO_DATE for i in items)
    assert any(inv["payment_date"] == ZERO_DATE for inv in invoices)
    for inv in invoices:
        assert (inv["refund_date"] != ZERO_DATE) == (inv["status"] == "refunded")
        assert (inv["payment_date"] != ZERO_DATE) == (
            inv["status"] in ("paid", "pending", "refunded")
        )


def test_reset_restores_state_and_flags(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    before = state(server)
    call(api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body={"amount": 1})
    control(server, "POST", "/state/wisecp", {"command": "float_noise", "value": False})
    control(server, "POST", "/state/wisecp", {"command": "readonly_paid", "value": True})
    control(server, "POST", "/reset", {"seed": 1})
    assert state(server) == before
    assert before["float_noise"] is True
    assert before["readonly_paid"] is False
    assert before["allowed_ips"] == []


def test_unknown_command_is_400(server: SandboxHTTPServer) -> None:
    for body in ({"command": "nope"}, {"command": "float_noise", "value": "no"}):
        r = requests.post(f"{server.url}/_sandbox/state/wisecp", json=body, timeout=TIMEOUT)
        assert r.status_code == 400


# ---------------------------------------------------------------- fault injection


def faults(server: SandboxHTTPServer, *rules: dict[str, Any]) -> None:
    control(server, "POST", "/faults", {"rules": list(rules)})


def test_fault_reject(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    faults(
        server,
        {
            "kind": "reject",
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
            "match": {"id": item["id"]},
            "message": "Fatura kilitli",
        },
    )
    r = call(api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body={"sequence": 4})
    assert r.status_code == 200
    assert r.json() == {"status": "error", "message": "Fatura kilitli"}
    # The rule matches on the path id only: another item goes through.
    other = state(server)["invoices"][1]["items"][0]
    assert other["id"] != item["id"]
    r = call(api, "PUT", f"Billing/UpdateInvoiceItem/{other['id']}", json_body={"sequence": 4})
    assert r.json()["status"] == "successful"
    assert [e["item_id"] for e in ledger(server)] == [other["id"]]


def test_fault_status_500_and_malformed(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    faults(server, {"kind": "status", "status": 503, "operation": "GetInvoice", "times": 1})
    r = call(api, "GET", f"Billing/GetInvoice/{item['owner_id']}")
    assert r.status_code == 503
    assert r.headers["Content-Type"].startswith("text/html")
    assert "503 Service Unavailable" in r.text
    assert call(api, "GET", f"Billing/GetInvoice/{item['owner_id']}").status_code == 200

    faults(server, {"kind": "status", "service": "wisecp"})
    r = call(api, "PUT", f"Billing/UpdateInvoiceItem/{item['id']}", json_body={"sequence": 4})
    assert r.status_code == 500
    assert ledger(server) == []

    faults(server, {"kind": "malformed", "service": "wisecp", "operation": "GetInvoices"})
    r = call(api, "GET", "Billing/GetInvoices")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


def test_fault_drop_after_apply(api: str, server: SandboxHTTPServer) -> None:
    item = an_item(server)
    faults(
        server,
        {"kind": "drop", "apply": True, "operation": "UpdateInvoiceItem", "times": 1},
    )
    with pytest.raises(requests.ConnectionError):
        call(
            api,
            "PUT",
            f"Billing/UpdateInvoiceItem/{item['id']}",
            json_body={"description": "applied, not answered"},
        )
    # The write happened although the client saw no answer.
    [entry] = ledger(server)
    assert entry["item_id"] == item["id"]
    inv = invoice(api, item["owner_id"])
    assert {i["id"]: i for i in inv["items"]}[item["id"]]["description"] == "applied, not answered"
