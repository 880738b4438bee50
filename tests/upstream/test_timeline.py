"""One record's timeline: operations, calls, field changes, syncs and drift, in order."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import InvoiceItem
from billing.sync import invoice_refresh, wisecp_sync
from subscriptions.models import InvoiceStatus as S
from subscriptions.services import subscription_invoice_set_status
from subscriptions.sync import subscription_refresh
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import a_record
from upstream.history.drift import drift_accept
from upstream.history.timeline import record_timeline
from upstream.models import Drift, Job, UpstreamCall

pytestmark = pytest.mark.django_db


def pushed_then_tampered(sandbox, operator):
    record = a_record(S.WAITING)
    subscription_invoice_set_status(
        record=record, status=S.CANCEL, actor=operator, reason="customer left"
    )
    sandbox.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.WAITING})
    subscription_refresh(record.subscription)
    return record


def test_events_come_oldest_first_with_each_source(mirror, operator):  # noqa: F811
    record = pushed_then_tampered(mirror, operator)
    job = Job.objects.get(inline=True)
    call = UpstreamCall.objects.get(operation="invoice_status_update")

    events = record_timeline(record)

    kinds = [e.kind for e in events]
    assert kinds.index("operation") < kinds.index("call") < kinds.index("change")
    assert kinds.index("change") < kinds.index("sync")
    assert kinds.index("sync") <= kinds.index("drift_found")
    assert [e.at for e in events] == sorted(e.at for e in events)
    operation = next(e for e in events if e.kind == "operation")
    assert (operation.actor, operation.reason, operation.job, operation.call) == (
        "operator",
        "customer left",
        job.pk,
        call.pk,
    )
    pushed = next(e for e in events if e.kind == "change")
    assert pushed.changes == [{"field": "status", "old": S.WAITING, "new": S.CANCEL}]
    assert (pushed.actor, pushed.reason, pushed.job, pushed.call) == (
        "operator",
        "customer left",
        job.pk,
        call.pk,
    )
    synced = next(e for e in events if e.kind == "sync")
    assert synced.changes == [{"field": "status", "old": S.CANCEL, "new": S.WAITING}]
    assert synced.job is None and synced.call is None


def test_resolving_drift_goes_on_the_timeline(mirror, operator):  # noqa: F811
    record = pushed_then_tampered(mirror, operator)
    drift = Drift.objects.get()
    drift_accept(drift=drift, actor=operator, reason="leave it")

    last = record_timeline(record)[-1]

    assert (last.kind, last.actor, last.reason) == ("drift_resolved", "operator", "leave it")


def test_the_api_serves_the_timeline_of_each_resource(mirror, operator, api_viewer):  # noqa: F811
    record = pushed_then_tampered(mirror, operator)

    response = api_viewer.get(f"/api/subscription-invoices/{record.pk}/timeline/")
    sub = api_viewer.get(f"/api/subscriptions/{record.subscription_id}/timeline/")
    unknown = api_viewer.get("/api/subscription-invoices/999999/timeline/")

    assert response.status_code == 200 and sub.status_code == 200
    assert unknown.status_code == 404
    events = response.json()
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert set(events[0]) == {"at", "kind", "actor", "reason", "summary", "call", "job", "changes"}
    change = next(e for e in events if e["kind"] == "change")
    assert change["reason"] == "customer left" and change["job"] and change["call"]
    assert change["changes"] == [{"field": "status", "old": S.WAITING, "new": S.CANCEL}]


def test_the_api_timeline_needs_the_view_permission(mirror, django_user_model):  # noqa: F811
    from rest_framework.test import APIClient

    record = a_record(S.WAITING)
    nobody = django_user_model.objects.create_user("n", password="pw", is_staff=True)
    api = APIClient()
    api.force_authenticate(nobody)

    assert api.get(f"/api/subscription-invoices/{record.pk}/timeline/").status_code == 403


def test_invoice_item_timeline_over_the_api_and_the_admin(sandbox, operator_client, api_viewer):
    wisecp_sync()
    item = InvoiceItem.objects.get(wisecp_id=1502)
    sandbox.tamper("wisecp", item_id=1502, fields={"amount": 2500})
    invoice_refresh(item.invoice)

    api = api_viewer.get(f"/api/invoice-items/{item.pk}/timeline/")
    invoice = api_viewer.get(f"/api/invoices/{item.invoice_id}/timeline/")
    operator_client.cookies["django_language"] = "tr"  # the viewer's language
    page = operator_client.get(reverse("admin:billing_invoiceitem_change", args=[item.pk]))

    assert api.status_code == 200 and invoice.status_code == 200
    kinds = [e["kind"] for e in api.json()]
    assert kinds[0] == "created" and "sync" in kinds and "drift_found" in kinds
    html = page.content.decode()
    assert 'id="record-timeline"' in html
    # ₺ and Turkish number format on the change, newest first: the drift above the creation.
    assert "₺\xa02.500,00" in html
    assert html.index('data-kind="drift_found"') < html.index('data-kind="created"')


def test_the_payment_record_page_shows_operation_reason_and_call(mirror, operator, operator_client):  # noqa: F811
    record = pushed_then_tampered(mirror, operator)
    call = UpstreamCall.objects.get(operation="invoice_status_update")

    page = operator_client.get(
        reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])
    )

    html = page.content.decode()
    timeline = html[html.index('id="record-timeline"') :]
    assert "customer left" in timeline
    assert reverse("admin:upstream_upstreamcall_change", args=[call.pk]) in timeline
    assert 'data-kind="drift_found"' in timeline


def test_job_items_and_calls_link_to_their_record(mirror, operator, operator_client):  # noqa: F811
    record = a_record(S.WAITING)
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")
    url = reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])

    calls = operator_client.get(reverse("admin:upstream_upstreamcall_changelist"))
    items = operator_client.get(reverse("admin:upstream_jobitem_changelist"))

    assert url in calls.content.decode()
    assert url in items.content.decode()


def test_the_history_link_leads_to_the_timeline(mirror, operator_client):  # noqa: F811
    record = a_record(S.WAITING)

    response = operator_client.get(
        reverse("admin:subscriptions_subscriptioninvoice_history", args=[record.pk])
    )

    change = reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])
    assert response.status_code == 302 and response.url == f"{change}#record-timeline"
