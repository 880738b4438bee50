"""The Paynet REST API (shared/INTERFACES.md) through DRF's APIClient against the sandbox."""

from __future__ import annotations

import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from subscriptions import services
from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.pushes import INVOICE_STATUS
from tests.subscriptions.helpers import a_record, a_subscription, upstream_record
from upstream.lists import counting
from upstream.models import Job, UpstreamCall
from upstream.pushes.verdicts import VerdictKind

S = InvoiceStatus
INVOICES = "/api/subscription-invoices/"
SUBSCRIPTIONS = "/api/subscriptions/"


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def ids_of(response) -> set[int]:
    return {row["id"] for row in response.json()["results"]}


# --- reads ---------------------------------------------------------------------------------


def test_subscription_list_filters_by_reference_and_id(mirror, api_viewer):
    sub = a_subscription(fixed=False)

    by_ref = api_viewer.get(SUBSCRIPTIONS, {"reference_no": sub.reference_no})
    by_id = api_viewer.get(SUBSCRIPTIONS, {"subscription_id": sub.subscription_id})
    everything = api_viewer.get(SUBSCRIPTIONS, {"page_size": 500})

    assert by_ref.status_code == by_id.status_code == 200
    assert ids_of(by_ref) == ids_of(by_id) == {sub.pk}
    assert everything.json()["count"] == Subscription.objects.count()
    row = by_ref.json()["results"][0]
    for key in ("id", "subscription_id", "reference_no", "name_surname", "is_fixed_price"):
        assert key in row
    assert row["amount"] == str(sub.amount)  # money as a decimal string in lira


def test_invoice_list_filters(mirror, api_viewer):
    record = a_record(S.WAITING)
    cases = {
        "invoice_id": ({"invoice_id": record.invoice_id}, {record.pk}),
        "invoice_no": ({"invoice_no": record.invoice_no}, {record.pk}),
        "subscription": (
            {"subscription": record.subscription_id, "page_size": 500},
            set(record.subscription.invoices.values_list("pk", flat=True)),
        ),
        "status": (
            {"status": 6, "page_size": 500},
            set(SubscriptionInvoice.objects.filter(status=6).values_list("pk", flat=True)),
        ),
        "subscription+status": (
            {"subscription": record.subscription_id, "status": 0, "page_size": 500},
            set(record.subscription.invoices.filter(status=0).values_list("pk", flat=True)),
        ),
    }
    for name, (params, expected) in cases.items():
        response = api_viewer.get(INVOICES, params)
        assert response.status_code == 200, name
        assert ids_of(response) == expected, name
    row = api_viewer.get(INVOICES, {"invoice_no": record.invoice_no}).json()["results"][0]
    assert row == {
        "id": record.pk,
        "subscription": record.subscription_id,
        "invoice_id": record.invoice_id,
        "invoice_no": record.invoice_no,
        "val_date": row["val_date"],
        "amount": str(record.amount),
        "agent_amount": str(record.agent_amount),
        "company_amount": str(record.company_amount),
        "currency": "TRY",
        "status": 0,
        "synced_at": row["synced_at"],
    }
    assert parse_datetime(row["val_date"]) == record.val_date  # ISO 8601 with its offset


def test_page_size_goes_up_to_500_and_no_further(mirror, api_viewer, monkeypatch):
    # Counted exactly: statistics other tests left on PostgreSQL may make the total an estimate
    # (estimated totals have their own tests, upstream/test_big_lists.py).
    monkeypatch.setattr(counting, "planner_estimate", lambda queryset: None)
    total = SubscriptionInvoice.objects.count()
    assert total > 500

    default = api_viewer.get(INVOICES).json()
    big = api_viewer.get(INVOICES, {"page_size": 500}).json()
    too_big = api_viewer.get(INVOICES, {"page_size": 5000}).json()

    assert len(default["results"]) == 50
    assert len(big["results"]) == 500 and big["count"] == total
    assert len(too_big["results"]) == 500


def test_anonymous_cannot_read(db, anonymous):
    assert anonymous.get(INVOICES).status_code == 403
    assert anonymous.get(SUBSCRIPTIONS).status_code == 403
    assert anonymous.get("/api/upstream-calls/").status_code == 403


# --- set-status ----------------------------------------------------------------------------


def set_status_url(record: SubscriptionInvoice) -> str:
    return f"{INVOICES}{record.pk}/set-status/"


def test_set_status_answers_200_with_the_updated_record(mirror, api_operator):
    record = a_record(S.WAITING)

    response = api_operator.post(
        set_status_url(record), {"status": 5, "reason": "test"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["id"] == record.pk and response.json()["status"] == 5
    record.refresh_from_db()
    assert record.status == 5
    assert upstream_record(mirror, record)["status"] == 5


@pytest.mark.parametrize("status", [1, 3, 7, -1, "x", None])
def test_set_status_with_a_bad_status_is_400_and_sends_nothing(mirror, api_operator, status):
    record = a_record(S.WAITING)

    response = api_operator.post(
        set_status_url(record), {"status": status, "reason": "test"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["detail"]
    assert mirror.ledger("paynet") == []
    assert not UpstreamCall.objects.exists()


def test_set_status_on_a_blocked_record_is_400_with_the_reason(mirror, api_operator):
    record = a_record(S.DONE_SUCCEED)

    response = api_operator.post(
        set_status_url(record), {"status": 5, "reason": "test"}, format="json"
    )

    assert response.status_code == 400
    assert "can no longer change" in response.json()["detail"]


def test_set_status_is_403_for_a_viewer_and_for_anonymous(mirror, api_viewer, anonymous):
    record = a_record(S.WAITING)

    as_viewer = api_viewer.post(
        set_status_url(record), {"status": 5, "reason": "test"}, format="json"
    )
    as_nobody = anonymous.post(
        set_status_url(record), {"status": 5, "reason": "test"}, format="json"
    )

    assert as_viewer.status_code == as_nobody.status_code == 403
    assert as_viewer.json()["detail"] and as_nobody.json()["detail"]
    assert mirror.ledger("paynet") == []
    record.refresh_from_db()
    assert record.status == S.WAITING


def test_set_status_refused_by_paynet_is_502_with_the_upstream_answer(mirror, api_operator):
    record = a_record(S.WAITING)
    mirror.command("paynet", command="set_status", invoice_no=record.invoice_no, status=3)

    response = api_operator.post(
        set_status_url(record), {"status": 5, "reason": "test"}, format="json"
    )

    assert response.status_code == 502
    body = response.json()
    call = UpstreamCall.objects.get(operation="invoice_status_update")
    assert body["call_id"] == call.pk
    assert body["upstream_code"] == "1"
    assert body["upstream_message"] == call.upstream_message != ""
    assert body["upstream_message"] in body["detail"]
    assert body["upstream"] == "paynet" and body["outcome"] == "rejected"
    # Read back at once: the mirror and the answer say what Paynet holds.
    assert "“Charged”" in body["detail"]
    record.refresh_from_db()
    assert record.status == S.DONE_SUCCEED


def test_set_status_unknown_record_is_404(mirror, api_operator):
    response = api_operator.post(
        f"{INVOICES}999999/set-status/", {"status": 5, "reason": "test"}, format="json"
    )
    assert response.status_code == 404


# --- bulk and per subscription ---------------------------------------------------------------


def test_bulk_set_status_is_202_with_the_job(
    mirror, api_operator, django_capture_on_commit_callbacks
):
    ids = list(SubscriptionInvoice.objects.order_by("pk").values_list("pk", flat=True)[:30])
    statuses = dict(SubscriptionInvoice.objects.filter(pk__in=ids).values_list("pk", "status"))
    changing = [
        pk for pk in ids if INVOICE_STATUS.judge(statuses[pk], 5).kind == VerdictKind.CHANGE
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = api_operator.post(
            f"{INVOICES}set-status/",
            {"ids": ids, "status": 5, "reason": "toplu iptal"},
            format="json",
        )

    assert response.status_code == 202
    job_ref = response.json()["job"]
    assert set(job_ref) >= {"id", "state"}
    assert job_ref["state"] == "queued"  # as created; it runs after the commit
    job = Job.objects.get(pk=job_ref["id"])
    assert job.state == Job.State.SUCCEEDED and job.total == len(changing)
    assert job.reason == "toplu iptal"
    assert len(mirror.ledger("paynet", "invoice_status_update")) == len(changing)


def test_bulk_set_status_with_unknown_ids_is_400(mirror, api_operator):
    response = api_operator.post(
        f"{INVOICES}set-status/", {"ids": [999999], "status": 5, "reason": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "999999" in response.json()["detail"]
    assert not Job.objects.exists()


def test_bulk_set_status_is_403_for_a_viewer(mirror, api_viewer):
    record = a_record(S.WAITING)
    response = api_viewer.post(
        f"{INVOICES}set-status/", {"ids": [record.pk], "status": 5, "reason": "x"}, format="json"
    )
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_set_invoices_status_of_a_subscription_is_202_and_reconciled(
    mirror, api_operator, django_capture_on_commit_callbacks
):
    sub = a_subscription(fixed=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_operator.post(
            f"{SUBSCRIPTIONS}{sub.pk}/set-invoices-status/",
            {"status": 4, "reason": "kapanış"},
            format="json",
        )

    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["job"]["id"])
    assert job.state == Job.State.SUCCEEDED
    for record in sub.invoices.all():
        assert record.status == upstream_record(mirror, record)["status"]


def test_set_invoices_status_is_403_for_a_viewer(mirror, api_viewer):
    sub = a_subscription(fixed=True)
    response = api_viewer.post(
        f"{SUBSCRIPTIONS}{sub.pk}/set-invoices-status/", {"status": 4, "reason": "x"}, format="json"
    )
    assert response.status_code == 403


# --- create a payment record ---------------------------------------------------------------


def invoices_url(sub: Subscription) -> str:
    return f"{SUBSCRIPTIONS}{sub.pk}/invoices/"


def test_create_invoice_is_201_with_the_new_record(mirror, api_operator):
    sub = a_subscription(fixed=False)

    response = api_operator.post(
        invoices_url(sub),
        {
            "val_date": "2030-01-15T10:00:00+03:00",
            "amount": "288.98",
            "agent_amount": "29.26",
            "company_amount": "259.72",
            "reason": "test",
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    (write,) = mirror.ledger("paynet", "create_invoice")
    assert body["invoice_id"] == str(write["invoice_id"])
    assert body["invoice_no"] == write["invoice_no"]
    assert (body["amount"], body["agent_amount"], body["company_amount"]) == (
        "288.98",
        "29.26",
        "259.72",
    )
    assert write["request"]["val_date"] == "15.01.2030 10:00:00"
    assert SubscriptionInvoice.objects.filter(pk=body["id"], subscription=sub).exists()


def test_create_invoice_accepts_paynets_own_date_format(mirror, api_operator):
    sub = a_subscription(fixed=False)

    response = api_operator.post(
        invoices_url(sub),
        {"val_date": "15.01.2030 10:00:00", "amount": "10", "reason": "test"},
        format="json",
    )

    assert response.status_code == 201
    (write,) = mirror.ledger("paynet", "create_invoice")
    assert write["request"]["val_date"] == "15.01.2030 10:00:00"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"amount": "10"}, "val_date"),
        ({"val_date": "2030-01-15T10:00:00Z", "amount": "0"}, "amount"),
        ({"val_date": "2030-01-15T10:00:00Z", "amount": "1.005"}, "amount"),
        ({"val_date": "yarın", "amount": "10"}, "val_date"),
        (
            {
                "val_date": "2030-01-15T10:00:00Z",
                "amount": "100",
                "agent_amount": "30",
                "company_amount": "60",
            },
            "non_field_errors",
        ),
        ({"val_date": "2030-01-15T10:00:00Z", "amount": "10", "currency": "USD"}, "currency"),
    ],
)
def test_create_invoice_bad_input_is_400_and_sends_nothing(mirror, api_operator, payload, field):
    response = api_operator.post(
        invoices_url(a_subscription(fixed=False)), {**payload, "reason": "test"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["detail"] and field in response.json()
    assert mirror.ledger("paynet") == []


def test_create_invoice_on_a_fixed_price_subscription_is_400(mirror, api_operator):
    response = api_operator.post(
        invoices_url(a_subscription(fixed=True)),
        {"val_date": "2030-01-15T10:00:00Z", "amount": "10", "reason": "test"},
        format="json",
    )
    assert response.status_code == 400
    assert "variable-price" in response.json()["detail"]


def test_create_invoice_refused_by_paynet_is_502_and_saves_nothing(mirror, api_operator):
    sub = a_subscription(fixed=False)
    count = SubscriptionInvoice.objects.count()
    mirror.faults({"kind": "reject", "operation": "create_invoice", "message": "Bayi bloke"})

    response = api_operator.post(
        invoices_url(sub),
        {"val_date": "2030-01-15T10:00:00Z", "amount": "10", "reason": "test"},
        format="json",
    )

    assert response.status_code == 502
    body = response.json()
    assert (body["upstream_code"], body["upstream_message"]) == ("1", "Bayi bloke")
    assert body["call_id"] == UpstreamCall.objects.get(operation="create_invoice").pk
    assert SubscriptionInvoice.objects.count() == count


def test_create_invoice_is_403_for_a_viewer(mirror, api_viewer):
    response = api_viewer.post(
        invoices_url(a_subscription(fixed=False)),
        {"val_date": "2030-01-15T10:00:00Z", "amount": "10", "reason": "test"},
        format="json",
    )
    assert response.status_code == 403
    assert mirror.ledger("paynet") == []


def test_create_invoice_with_a_charge_date_in_the_past_is_400(mirror, api_operator):
    response = api_operator.post(
        invoices_url(a_subscription(fixed=False)),
        {"val_date": "2020-01-15T10:00:00+03:00", "amount": "10", "reason": "test"},
        format="json",
    )

    assert response.status_code == 400
    assert "in the past" in response.json()["val_date"][0]
    assert mirror.ledger("paynet") == [] and not UpstreamCall.objects.exists()


def test_create_invoice_with_a_share_larger_than_the_amount_is_400(mirror, api_operator):
    response = api_operator.post(
        invoices_url(a_subscription(fixed=False)),
        {
            "val_date": "2030-01-15T10:00:00+03:00",
            "amount": "10",
            "agent_amount": "10.01",
            "reason": "test",
        },
        format="json",
    )

    assert response.status_code == 400
    assert "cannot be larger than the amount" in response.json()["detail"]
    assert mirror.ledger("paynet") == []


def test_create_invoice_repeating_a_day_and_amount_needs_allow_duplicate(mirror, api_operator):
    sub = a_subscription(fixed=False)
    existing = sub.invoices.order_by("pk").first()
    existing.val_date = parse_datetime("2030-01-15T08:00:00+03:00")
    existing.save(update_fields=["val_date"])
    body = {"val_date": "2030-01-15T10:00:00+03:00", "amount": str(existing.amount)}

    refused = api_operator.post(invoices_url(sub), {**body, "reason": "test"}, format="json")

    assert refused.status_code == 400
    assert existing.invoice_no in refused.json()["allow_duplicate"][0]
    assert mirror.ledger("paynet") == []

    created = api_operator.post(
        invoices_url(sub), {**body, "reason": "test", "allow_duplicate": True}, format="json"
    )

    assert created.status_code == 201
    assert created.json()["amount"] == str(existing.amount)
    assert len(mirror.ledger("paynet", "create_invoice")) == 1


def test_writes_pass_the_idempotency_key_header_to_the_service(mirror, api_operator, monkeypatch):
    seen: list[str] = []
    record = a_record(S.WAITING)
    monkeypatch.setattr(
        services,
        "subscription_invoice_set_status",
        lambda **kw: seen.append(kw["idempotency_key"]) or kw["record"],
    )
    monkeypatch.setattr(
        services,
        "subscription_invoice_create",
        lambda **kw: seen.append(kw["idempotency_key"]) or record,
    )

    api_operator.post(
        set_status_url(record),
        {"status": 5, "reason": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    api_operator.post(
        invoices_url(record.subscription),
        {"val_date": "2030-01-15T10:00:00Z", "amount": "10", "reason": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )
    api_operator.post(set_status_url(record), {"status": 5, "reason": "x"}, format="json")

    assert seen == ["k-1", "k-2", ""]


# --- a reason is required for every money-affecting write --------------------------------------


def _write_routes() -> dict[str, tuple[str, dict]]:
    record = a_record(S.WAITING)
    variable = a_subscription(fixed=False)
    return {
        "set-status": (set_status_url(record), {"status": 5}),
        "bulk set-status": (f"{INVOICES}set-status/", {"ids": [record.pk], "status": 5}),
        "set-invoices-status": (
            f"{SUBSCRIPTIONS}{record.subscription_id}/set-invoices-status/",
            {"status": 4},
        ),
        "create": (invoices_url(variable), {"val_date": "2030-01-15T10:00:00Z", "amount": "10"}),
    }


WRITE_ROUTES = ["set-status", "bulk set-status", "set-invoices-status", "create"]


@pytest.mark.parametrize("route", WRITE_ROUTES)
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_money_writes_without_a_reason_are_400_and_send_nothing(
    mirror, api_operator, route, reason
):
    url, body = _write_routes()[route]
    if reason is not None:
        body = {**body, "reason": reason}

    response = api_operator.post(url, body, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] and response.json()["reason"]
    assert mirror.ledger("paynet") == []
    assert not Job.objects.exists() and not UpstreamCall.objects.exists()


# --- jobs and the call log -----------------------------------------------------------------


def test_job_detail_and_retry_failed(
    mirror, api_operator, api_viewer, django_capture_on_commit_callbacks
):
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:4])
    target = records[0]
    mirror.faults(
        {"kind": "reject", "match": {"invoice_no": target.invoice_no}, "message": "Kayıt kilitli"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        created = api_operator.post(
            f"{INVOICES}set-status/",
            {"ids": [r.pk for r in records], "status": 5, "reason": "x"},
            format="json",
        )
    job_id = created.json()["job"]["id"]

    detail = api_viewer.get(f"/api/jobs/{job_id}/").json()

    assert (detail["state"], detail["total"], detail["done"]) == ("partially_failed", 4, 4)
    assert (detail["succeeded"], detail["failed"]) == (3, 1)
    failed = [i for i in detail["items"] if i["outcome"] == "rejected"]
    assert len(failed) == 1 and "Kayıt kilitli" in failed[0]["message"]
    assert failed[0]["target_id"] == str(target.pk)

    assert api_viewer.post(f"/api/jobs/{job_id}/retry-failed/").status_code == 403
    mirror.faults()
    with django_capture_on_commit_callbacks(execute=True):
        retried = api_operator.post(f"/api/jobs/{job_id}/retry-failed/")

    assert retried.status_code == 202
    assert retried.json()["job"]["id"] == job_id
    after = api_operator.get(f"/api/jobs/{job_id}/").json()
    assert (after["state"], after["succeeded"], after["failed"]) == ("succeeded", 4, 0)
    target.refresh_from_db()
    assert target.status == 5


def test_retry_of_a_job_without_failures_is_400(
    mirror, api_operator, django_capture_on_commit_callbacks
):
    record = a_record(S.WAITING)
    with django_capture_on_commit_callbacks(execute=True):
        created = api_operator.post(
            f"{INVOICES}set-status/",
            {"ids": [record.pk], "status": 5, "reason": "x"},
            format="json",
        )

    response = api_operator.post(f"/api/jobs/{created.json()['job']['id']}/retry-failed/")

    assert response.status_code == 400
    assert "no failed items" in response.json()["detail"]


def test_upstream_calls_list_filters_by_service_and_hides_secrets(mirror, api_operator, settings):
    record = a_record(S.WAITING)
    api_operator.post(set_status_url(record), {"status": 5, "reason": "test"}, format="json")

    response = api_operator.get("/api/upstream-calls/", {"service": "paynet"})
    elsewhere = api_operator.get("/api/upstream-calls/", {"service": "wisecp"})

    assert response.status_code == 200
    (call,) = response.json()["results"]
    assert call["operation"] == "invoice_status_update" and call["outcome"] == "ok"
    assert call["request_headers"]["Authorization"] == "***"
    assert settings.PAYNET_SECRET_KEY not in response.content.decode()
    for key in ("id", "service", "method", "url", "request", "status_code", "response"):
        assert key in call
    assert elsewhere.json()["results"] == []


def test_upstream_calls_are_read_only(mirror, api_operator):
    record = a_record(S.WAITING)
    api_operator.post(set_status_url(record), {"status": 5, "reason": "test"}, format="json")
    call = UpstreamCall.objects.get()

    url = f"/api/upstream-calls/{call.pk}/"
    # 403 (no such model permission) or 405 (no such method): either way, nothing changes.
    assert api_operator.delete(url).status_code in (403, 405)
    assert api_operator.patch(url, {"outcome": "failed"}, format="json").status_code in (403, 405)
    assert api_operator.post("/api/upstream-calls/", {}, format="json").status_code in (403, 405)
    call.refresh_from_db()
    assert call.outcome == "ok"


def test_openapi_schema_is_served(db, client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/subscription-invoices/{id}/set-status/" in text
    assert "/api/subscriptions/{id}/invoices/" in text
