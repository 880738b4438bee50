"""The REST API: institutions, and bill-query batches created, run and read back."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billqueries.models import BillQueryBatch

from .conftest import line

pytestmark = pytest.mark.django_db

BATCHES = "/api/bill-query-batches/"


def test_institutions_list_with_interface_fields(institutions, api_viewer) -> None:
    response = api_viewer.get("/api/institutions/", {"additional_no_required": "true"})
    assert response.status_code == 200
    [telekom] = response.json()["results"]
    assert {"id", "soot_code", "name", "invoice_type", "mask", "additional_no_required"} <= set(
        telekom
    )
    assert (telekom["soot_code"], telekom["name"], telekom["mask"]) == (
        30,
        "Türk Telekom",
        "9999999999",
    )
    assert api_viewer.post("/api/institutions/", {}).status_code == 403


def test_create_answers_202_with_the_batch_and_its_job(
    sandbox, institutions, api_operator, django_capture_on_commit_callbacks
) -> None:
    payload = {
        "lines": [
            line(1, "01345677000"),
            line(1, "1345600"),
            {"soot_code": 30, "subscriber_no": "2125550101", "additional_no": "7712345"},
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = api_operator.post(BATCHES, payload, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued" and body["line_count"] == 3 and body["source"] == "api"
    assert set(body["job"]) >= {"id", "state"}

    detail = api_operator.get(f"{BATCHES}{body['id']}/").json()
    assert detail["state"] == "finished"
    assert detail["found_count"] + detail["no_debt_count"] == 3 and detail["failed_count"] == 0
    first, second, _third = detail["lines"]
    assert set(first) >= {
        "soot_code",
        "subscriber_no",
        "additional_no",
        "firm_ref_no",
        "state",
        "result",
        "result_code",
        "result_message",
        "debts",
    }
    assert (first["state"], first["result"], first["result_code"]) == ("done", True, 1)
    [debt] = first["debts"]
    assert set(debt) >= {
        "invoice_query_id",
        "customer_name",
        "invoice_no",
        "exp_date",
        "invoice_amount",
        "merchant_profit",
        "total_amount",
    }
    assert (debt["invoice_amount"], debt["total_amount"]) == ("560.00", "562.00")
    assert len(debt["exp_date"]) == 10 and debt["exp_date"][4] == "-"  # ISO 8601
    assert (second["result"], second["result_code"], second["debts"]) == (False, -1, [])
    amounts = [Decimal(d["invoice_amount"]) for ln in detail["lines"] for d in ln["debts"]]
    assert Decimal(detail["debt_total"]) == sum(amounts) and detail["debt_count"] == len(amounts)

    listed = api_operator.get(BATCHES).json()
    assert [b["id"] for b in listed["results"]] == [body["id"]]
    assert "lines" not in listed["results"][0]


def test_invalid_lines_answer_400_with_a_reason_per_line(institutions, api_operator) -> None:
    payload = {
        "lines": [line(1, "01345677000"), line(3, "12"), line(30, "2125550101"), line(77, "1")]
    }
    response = api_operator.post(BATCHES, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "3 lines cannot be queried" in body["detail"]
    assert [(x["index"], x["line"]) for x in body["lines"]] == [(1, 2), (2, 3), (3, 4)]
    assert "9 digits" in body["lines"][0]["reason"]
    assert "additional number" in body["lines"][1]["reason"]
    assert "code 77" in body["lines"][2]["reason"]
    assert BillQueryBatch.objects.count() == 0


def test_malformed_body_answers_400(institutions, api_operator) -> None:
    assert api_operator.post(BATCHES, {"lines": []}, format="json").status_code == 400
    response = api_operator.post(BATCHES, {"lines": [{"soot_code": "x"}]}, format="json")
    assert response.status_code == 400
    assert "subscriber_no" in str(response.json()["lines"])  # per line, by index


def test_viewer_gets_403_and_nothing_runs(sandbox, institutions, api_viewer) -> None:
    response = api_viewer.post(BATCHES, {"lines": [line(1, "01345677000")]}, format="json")
    assert response.status_code == 403
    assert api_viewer.post(BATCHES, {"lines": [line(99, "x")]}, format="json").status_code == 403
    assert BillQueryBatch.objects.count() == 0
    assert sandbox.ledger("payofin") == []
    assert api_viewer.get(BATCHES).status_code == 200


def test_rerun_failed_answers_202_or_400(
    sandbox, institutions, run_batch, api_operator, django_capture_on_commit_callbacks
) -> None:
    sandbox.faults(
        {
            "kind": "status",
            "service": "payofin",
            "status": 502,
            "match": {"subscriberNo": "1345600"},
        }
    )
    batch = run_batch([line(1, "1345600")])
    assert batch.failed_count == 1
    sandbox.faults()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_operator.post(f"{BATCHES}{batch.pk}/rerun-failed/")
    assert response.status_code == 202
    batch.refresh_from_db()
    assert batch.failed_count == 0 and batch.no_debt_count == 1
    again = api_operator.post(f"{BATCHES}{batch.pk}/rerun-failed/")
    assert again.status_code == 400 and "no failed lines" in again.json()["detail"]
