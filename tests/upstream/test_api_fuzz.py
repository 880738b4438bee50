"""Schemathesis against the API's own OpenAPI schema: no answer is a 500, and none is HTML.

Each operation in /api/schema/ gets schemathesis' coverage cases (every parameter and body field
missing, of the wrong type, at its bounds; unexpected methods) and a bounded number of generated
requests, valid and invalid. They go in-process to the WSGI app, as a superuser with a DRF token,
over a mirror synced from the sandbox, with jobs and a bill query batch already there; writes
reach the sandbox over real HTTP, never a real upstream. 502 and 503 are the API's documented
answers for an upstream that refused or failed and for an open breaker; any other 5xx is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from billing.models import Invoice, InvoiceItem
from billing.sync import wisecp_sync
from billqueries.models import BillQueryBatch, Institution
from billqueries.sync import payofin_sync
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.sync import paynet_sync
from upstream.models import Job, UpstreamCall

# Generated requests per operation in the fuzzing phase (the coverage phase adds its fixed cases).
# The whole module takes about 40 s on two cores.
MAX_EXAMPLES = 10
DOCUMENTED_5XX = {502, 503}

# The rows behind each `{id}`, so that most generated ids name a real record.
MODELS = {
    "/api/subscriptions/": Subscription,
    "/api/subscription-invoices/": SubscriptionInvoice,
    "/api/invoices/": Invoice,
    "/api/invoice-items/": InvoiceItem,
    "/api/institutions/": Institution,
    "/api/bill-query-batches/": BillQueryBatch,
    "/api/jobs/": Job,
    "/api/upstream-calls/": UpstreamCall,
}

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    WSGIHandler(),
    config=schemathesis.Config.from_dict(
        {
            "seed": 1,
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        }
    ),
)


@pytest.fixture
def seeded_token(sandbox, db, django_user_model, django_capture_on_commit_callbacks) -> str:
    """The mirror synced from a freshly reset sandbox, a finished job and batch; a token."""
    paynet_sync()
    wisecp_sync()
    payofin_sync()
    admin = django_user_model.objects.create_superuser("fuzz-admin", password="pw")
    api = APIClient()
    api.force_authenticate(admin)
    ids = list(SubscriptionInvoice.objects.filter(status=0).values_list("pk", flat=True)[:5])
    with django_capture_on_commit_callbacks(execute=True):
        bulk = api.post(
            "/api/subscription-invoices/set-status/",
            {"ids": ids, "status": 5, "reason": "fuzz"},
            format="json",
        )
        batch = api.post(
            "/api/bill-query-batches/",
            {"lines": [{"soot_code": 1, "subscriber_no": "01345677000"}]},
            format="json",
        )
    assert (bulk.status_code, batch.status_code) == (202, 202), (bulk.content, batch.content)
    return Token.objects.create(user=admin).key


@pytest.fixture
def fuzz_headers(seeded_token) -> Iterator[dict[str, str]]:
    """Headers for the generated requests, which keep the test's transaction open.

    Django closes "old" connections when a request starts and ends, which inside the test's
    transaction would break it; Django's test Client disconnects the same receivers (and
    connects them again after each of its requests, hence after the seeding above).
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield {"Authorization": f"Token {seeded_token}"}
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _aim_at_existing_row(case) -> None:
    """Map a well-formed id onto a real row, except every fourth one (those mostly 404)."""
    value = (case.path_parameters or {}).get("id")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value % 4 == 3:
        return
    for prefix, model in MODELS.items():
        if case.path.startswith(prefix):
            ids = list(model.objects.order_by("pk").values_list("pk", flat=True)[:50])
            if ids:
                case.path_parameters["id"] = ids[value % len(ids)]
            return


@schema.parametrize()
# One database transaction and one sandbox per operation, shared by its generated requests.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_answers_no_server_error_and_no_html(case, fuzz_headers):
    _aim_at_existing_row(case)
    response = case.call(headers=fuzz_headers)
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500 or response.status_code in DOCUMENTED_5XX, (
        f"{where}\n{case.as_curl_command()}\n{response.text[:2000]}"
    )
    content_type = " ".join(response.headers.get("content-type", []))
    assert "html" not in content_type, f"{where}: {content_type}"
