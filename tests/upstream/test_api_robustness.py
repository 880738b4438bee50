"""API robustness rules (shared/INTERFACES.md: "Never a 500, never HTML").

- a malformed or oversized `{id}` on any detail or action route is a 404 JSON `{"detail"}`;
- any other unmatched /api/ path is a 404 JSON too;
- a bad filter, page or body value is a 400 JSON naming the field, or a normal list.
"""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from config.api_urls import router
from subscriptions.models import Subscription, SubscriptionInvoice
from upstream.api import errors as api_errors
from upstream.api import filters as api_filters

pytestmark = pytest.mark.django_db

MALFORMED_IDS = ["abc", "1.5", "-1", "1e3", "%20", "0x1", "%C4%B1", "1%0A", "9" * 20, "9" * 5000]
# Digits the route accepts but no column holds: the lookup itself must answer "not found".
OVERSIZED_IDS = ["9223372036854775808", "9999999999999999999"]
# A valid body for the actions that read their body before they look the record up.
BODIES = {
    "subscription-create-invoice": {
        "val_date": "2026-01-15T00:00:00",
        "amount": "10.00",
        "reason": "test",
    },
    "subscription-set-invoices-status": {"status": 5, "reason": "test"},
    "subscriptioninvoice-set-status": {"status": 5, "reason": "test"},
}


def _id_routes() -> list[tuple[str, str]]:
    """(url name, method) for every route of the API that takes an `{id}`."""
    routes = set()
    for pattern in router.urls:
        actions = getattr(pattern.callback, "actions", None) or {}
        if (
            "(?P<pk>" in pattern.pattern.regex.pattern
            and "format" not in pattern.pattern.regex.pattern
        ):
            routes |= {(pattern.name, method) for method in actions}
    return sorted(routes)


ID_ROUTES = _id_routes()


@pytest.fixture
def api(django_user_model) -> APIClient:
    admin = django_user_model.objects.create_superuser("robust-admin", password="pw")
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(admin)
    return client


def _call(api: APIClient, method: str, url: str, body: dict | None = None):
    if method == "get":
        return api.get(url)
    return getattr(api, method)(url, body or {}, format="json")


def assert_json(response, status: int) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert "detail" in body, body
    return body


def with_id(name: str, value: str) -> str:
    url = reverse(name, kwargs={"pk": 1})
    assert url.count("/1/") == 1, url
    return url.replace("/1/", f"/{value}/")


def test_every_id_route_is_covered():
    names = {name for name, _ in ID_ROUTES}
    assert {
        "subscription-detail",
        "subscription-set-invoices-status",
        "subscription-create-invoice",
        "subscriptioninvoice-detail",
        "subscriptioninvoice-set-status",
        "invoice-detail",
        "invoiceitem-detail",
        "institution-detail",
        "billquerybatch-detail",
        "billquerybatch-rerun-failed",
        "job-detail",
        "job-retry-failed",
        "job-cancel",
        "upstreamcall-detail",
    } <= names
    assert ("invoiceitem-detail", "patch") in ID_ROUTES


@pytest.mark.parametrize("value", MALFORMED_IDS)
@pytest.mark.parametrize(("name", "method"), ID_ROUTES)
def test_malformed_id_is_a_json_404(api, name, method, value):
    response = _call(api, method, with_id(name, value), BODIES.get(name))
    assert_json(response, 404)


@pytest.mark.parametrize("value", OVERSIZED_IDS)
@pytest.mark.parametrize(("name", "method"), ID_ROUTES)
def test_id_beyond_the_column_is_a_json_404(api, name, method, value):
    response = _call(api, method, with_id(name, value), BODIES.get(name))
    assert_json(response, 404)


def test_malformed_id_is_a_404_before_authentication():
    response = APIClient().post(with_id("job-retry-failed", "abc"))
    assert_json(response, 404)


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/nope/", "/api/subscriptions/1/nope/", "/api/a/b/c"])
def test_unknown_api_path_is_a_json_404_for_anyone(method, path):
    response = getattr(APIClient(), method)(path)
    body = assert_json(response, 404)
    assert body == {"detail": "Not found."}


def test_api_path_without_its_slash_still_redirects(api):
    response = api.get("/api/subscriptions")
    assert response.status_code == 301
    assert response["Location"] == "/api/subscriptions/"


BAD_FILTERS = [
    ("/api/subscription-invoices/", "status", "abc"),
    ("/api/subscription-invoices/", "status", "99999999999999999999"),
    ("/api/subscription-invoices/", "subscription", "abc"),
    ("/api/subscription-invoices/", "subscription", "99999999999999999999"),
    ("/api/subscription-invoices/", "subscription", "9" * 5000),
    ("/api/subscription-invoices/", "val_date_after", "2026-99-99"),
    ("/api/subscription-invoices/", "val_date_after", "0001-01-01T00:00:00+14:00"),
    ("/api/subscription-invoices/", "val_date_after", "0001-01-01T00:00:00"),
    ("/api/subscription-invoices/", "val_date_before", "9999-12-31T23:59:59-14:00"),
    ("/api/subscription-invoices/", "invoice_no", "a\x00b"),
    # Offsets Python takes (up to ±23:59) but PostgreSQL does not (±15:59): a 400, not a 500.
    ("/api/subscription-invoices/", "val_date_after", "2020-01-01T00:00:00+20:00"),
    ("/api/subscription-invoices/", "val_date_before", "2020-01-01T00:00:00-16:00"),
    ("/api/upstream-calls/", "created_after", "2020-01-01T00:00:00+20:00"),
    ("/api/upstream-calls/", "created_before", "2020-01-01T00:00:00-23:59"),
    ("/api/upstream-calls/", "created_after", "99999-01-01"),
    ("/api/upstream-calls/", "created_after", "0001-01-01"),
    ("/api/upstream-calls/", "job", "abc"),
    ("/api/upstream-calls/", "job", "99999999999999999999"),
    ("/api/upstream-calls/", "outcome", "maybe"),
    ("/api/upstream-calls/", "service", "x"),
    ("/api/invoices/", "wisecp_id", "abc"),
    ("/api/invoices/", "wisecp_id", "1e5"),
    ("/api/invoices/", "wisecp_id", "99999999999999999999"),
    ("/api/invoices/", "user_id", "-99999999999999999999"),
    ("/api/invoices/", "status", "lost"),
    ("/api/invoice-items/", "invoice", "abc"),
    ("/api/invoice-items/", "order_id", "9223372036854775808"),
    ("/api/invoice-items/", "wisecp_id", "9" * 5000),
    ("/api/institutions/", "soot_code", "99999999999999999999"),
    ("/api/bill-query-batches/", "state", "abc"),
    ("/api/jobs/", "state", "zzz"),
    ("/api/subscriptions/", "page", "abc"),
    ("/api/subscriptions/", "page", "0"),
    ("/api/subscriptions/", "page", "-3"),
    ("/api/jobs/", "page", "9" * 5000),
]


@pytest.mark.parametrize(("url", "field", "value"), BAD_FILTERS)
def test_bad_filter_value_is_a_json_400_naming_the_field(api, url, field, value):
    body = assert_json(api.get(url, {field: value}), 400)
    assert isinstance(body.get(field), list) and body[field], body


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/api/subscriptions/", {"page_size": "-1"}),
        ("/api/subscriptions/", {"page_size": "abc"}),
        ("/api/subscriptions/", {"page_size": "9" * 30}),
        ("/api/subscriptions/", {"page": "last"}),
        ("/api/institutions/", {"active": "abc"}),
        ("/api/subscription-invoices/", {"val_date_before": "9999-12-31T23:59:59"}),
        ("/api/invoices/", {"wisecp_id": "2147483647"}),
    ],
)
def test_odd_but_harmless_values_give_a_normal_list(api, url, params):
    response = api.get(url, params)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["results"] == []


def test_page_past_the_end_stays_a_json_404(api):
    assert_json(api.get("/api/subscriptions/", {"page": "2"}), 404)


def test_every_list_filters_through_the_shared_filterset():
    backend = api_filters.FilterBackend()
    for prefix, viewset, _ in router.registry:
        view = viewset(action="list")
        filterset = backend.get_filterset_class(view, viewset.queryset)
        if filterset is not None:
            assert issubclass(filterset, api_filters.FilterSet), prefix


BIG = 99999999999999999999


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sequence", BIG),
        ("quantity", 2**31),
        ("order_id", BIG),
        ("due_date", "0001-01-01T00:00:00"),
        ("due_date", "9999-12-31T23:59:59-14:00"),
    ],
)
def test_item_patch_value_beyond_the_column_is_a_400_and_sends_nothing(api, sandbox, field, value):
    from billing.models import InvoiceItem
    from billing.sync import wisecp_sync

    wisecp_sync()
    item = InvoiceItem.objects.order_by("pk").first()
    sent = len(sandbox.ledger("wisecp"))
    body = assert_json(
        api.patch(f"/api/invoice-items/{item.pk}/", {field: value}, format="json"), 400
    )
    assert field in body
    assert len(sandbox.ledger("wisecp")) == sent


def test_bulk_status_ids_beyond_the_column_are_a_400(api):
    response = api.post(
        "/api/subscription-invoices/set-status/", {"ids": [BIG, -BIG], "status": 5}, format="json"
    )
    assert "ids" in assert_json(response, 400)


def test_create_invoice_before_year_one_in_utc_is_a_400_and_sends_nothing(api, sandbox):
    subscription = Subscription.objects.create(
        subscription_id="sub-robust", reference_no="ref-robust", is_fixed_price=False
    )
    response = api.post(
        f"/api/subscriptions/{subscription.pk}/invoices/",
        {"val_date": "0001-01-01T00:00:00", "amount": "1.00", "reason": "test"},
        format="json",
    )
    assert "val_date" in assert_json(response, 400)
    assert sandbox.ledger("paynet") == []
    assert not SubscriptionInvoice.objects.exists()


@pytest.mark.parametrize("offset", ["+20:00", "-16:00", "+23:59"])
def test_create_invoice_with_an_offset_beyond_the_database_is_a_400(api, sandbox, offset):
    subscription = Subscription.objects.create(
        subscription_id="sub-offset", reference_no="ref-offset", is_fixed_price=False
    )
    response = api.post(
        f"/api/subscriptions/{subscription.pk}/invoices/",
        {"val_date": f"2030-01-15T00:00:00{offset}", "amount": "1.00", "reason": "test"},
        format="json",
    )
    assert "val_date" in assert_json(response, 400)
    assert sandbox.ledger("paynet") == []


def test_an_offset_the_database_holds_is_still_taken(api):
    response = api.get("/api/upstream-calls/", {"created_after": "2020-01-01T00:00:00+14:00"})
    assert response.status_code == 200, response.content[:300]


def test_server_error_under_api_is_json_and_elsewhere_the_usual_page():
    factory = RequestFactory()
    api_answer = api_errors.server_error(factory.get("/api/jobs/"))
    assert api_answer.status_code == 500
    assert api_answer["Content-Type"].startswith("application/json")
    assert b'"detail"' in api_answer.content
    admin_answer = api_errors.server_error(factory.get("/jobs/"))
    assert admin_answer.status_code == 500
    assert admin_answer["Content-Type"].startswith("text/html")


def test_schema_keeps_ids_integers(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    id_params = [
        parameter
        for path, operations in schema["paths"].items()
        if "{id}" in path
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "id" and parameter["in"] == "path"
    ]
    assert len(id_params) >= 14
    assert all(parameter["schema"] == {"type": "integer"} for parameter in id_params), id_params
