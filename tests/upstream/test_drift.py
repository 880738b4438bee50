"""Drift: changes made at the upstream behind the product's back (the sandbox's tamper control)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import Invoice, InvoiceItem
from billing.services import invoice_item_update
from billing.sync import invoice_refresh, wisecp_sync
from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import subscription_invoice_set_status
from subscriptions.sync import subscription_refresh
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import a_record, upstream_record
from upstream.history.drift import (
    drift_counts,
    drift_repush,
    drift_repushes_settle,
    drift_resolve_many,
)
from upstream.models import Drift, Job, UpstreamCall

pytestmark = pytest.mark.django_db
DRIFT = "/api/drift/"


def only_drift() -> Drift:
    (drift,) = Drift.objects.all()
    return drift


def tamper_and_refresh(sandbox, record: SubscriptionInvoice, **fields) -> None:
    sandbox.tamper("paynet", invoice_no=record.invoice_no, fields=fields)
    subscription_refresh(record.subscription)


# --- Paynet -------------------------------------------------------------------------------


def test_an_amount_changed_at_paynet_is_outside_change_and_the_mirror_follows(mirror):  # noqa: F811
    record = a_record(S.WAITING)
    before = record.amount

    tamper_and_refresh(mirror, record, amount=12345)

    record.refresh_from_db()
    assert record.amount == Decimal("123.45")
    drift = only_drift()
    assert (drift.kind, drift.field, drift.state) == ("outside_change", "amount", "open")
    assert (drift.expected, drift.found) == (str(before), "123.45")
    assert (drift.service, drift.record_label) == ("paynet", record.invoice_no)


@pytest.mark.parametrize("charged", [S.DONE_SUCCEED, S.DONE_UNSUCCEED])
def test_paynet_charging_a_record_is_lifecycle_not_drift(mirror, charged):  # noqa: F811
    record = a_record(S.WAITING)

    tamper_and_refresh(mirror, record, status=charged)

    record.refresh_from_db()
    assert record.status == charged
    assert not Drift.objects.exists()


def test_a_status_change_other_than_charging_is_drift(mirror):  # noqa: F811
    record = a_record(S.WAITING)

    tamper_and_refresh(mirror, record, status=S.CANCEL)

    drift = only_drift()
    assert (drift.kind, drift.expected, drift.found) == ("outside_change", S.WAITING, S.CANCEL)


def test_a_pushed_status_changed_back_upstream_is_reverted(mirror, operator):  # noqa: F811
    record = a_record(S.WAITING)
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")

    tamper_and_refresh(mirror, record, status=S.WAITING)

    drift = only_drift()
    assert (drift.kind, drift.field, drift.expected, drift.found) == (
        "reverted",
        "status",
        S.CANCEL,
        S.WAITING,
    )


def test_a_record_paynet_no_longer_lists_is_missing(mirror):  # noqa: F811
    record = a_record(S.WAITING)
    mirror.tamper("paynet", invoice_no=record.invoice_no, delete=True)

    subscription_refresh(record.subscription)
    subscription_refresh(record.subscription)  # seen again: still one entry

    drift = only_drift()
    assert (drift.kind, drift.record_label, drift.found) == ("missing", record.invoice_no, None)
    assert SubscriptionInvoice.objects.filter(pk=record.pk).exists()


# --- WiseCP -------------------------------------------------------------------------------


@pytest.fixture
def wisecp(sandbox, db):
    wisecp_sync()
    return sandbox


ITEM_ID = 1502


def test_an_item_amount_changed_in_wisecp_is_drift_a_description_is_not(wisecp):
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    wisecp.tamper("wisecp", item_id=ITEM_ID, fields={"amount": 999.5, "description": "edited"})

    invoice_refresh(item.invoice)

    item.refresh_from_db()
    assert (item.amount, item.description) == (Decimal("999.50"), "edited")
    drift = only_drift()
    assert (drift.service, drift.kind, drift.field, drift.found) == (
        "wisecp",
        "outside_change",
        "amount",
        "999.50",
    )
    assert drift.record_label == str(ITEM_ID)


def test_an_item_deleted_in_wisecp_is_missing(wisecp):
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    wisecp.tamper("wisecp", item_id=ITEM_ID, delete=True)

    invoice_refresh(item.invoice)

    assert not InvoiceItem.objects.filter(pk=item.pk).exists()
    drift = only_drift()
    assert (drift.kind, drift.record_label) == ("missing", str(ITEM_ID))


def test_an_invoice_getting_paid_is_not_drift(wisecp):
    invoice = Invoice.objects.filter(status="unpaid").order_by("pk").first()
    wisecp.command("wisecp", command="readonly_paid", value=False)
    state = wisecp.server.sandbox
    service = next(s for s in state.services if s.name == "wisecp")
    with service.lock:
        service.invoices[invoice.wisecp_id]["status"] = "paid"

    invoice_refresh(invoice)

    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert not Drift.objects.exists()


# --- accept and re-push -------------------------------------------------------------------


def test_accept_over_the_api_keeps_the_upstream_value_with_a_reason(mirror, api_operator):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, amount=50000)
    drift = only_drift()

    missing_reason = api_operator.post(f"{DRIFT}{drift.pk}/accept/", {}, format="json")
    accepted = api_operator.post(
        f"{DRIFT}{drift.pk}/accept/", {"reason": "agreed with the customer"}, format="json"
    )
    again = api_operator.post(f"{DRIFT}{drift.pk}/accept/", {"reason": "x"}, format="json")

    assert missing_reason.status_code == 400
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["state"] == "accepted"
    assert accepted.json()["resolution_reason"] == "agreed with the customer"
    assert again.status_code == 400
    record.refresh_from_db()
    assert record.amount == Decimal("500.00")


def test_repush_over_the_api_sends_expected_through_the_push_path(mirror, api_operator, operator):  # noqa: F811
    record = a_record(S.WAITING)
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")
    tamper_and_refresh(mirror, record, status=S.WAITING)
    drift = only_drift()

    response = api_operator.post(
        f"{DRIFT}{drift.pk}/repush/", {"reason": "cancel it again"}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["drift"]["state"] == "repushed"
    job = Job.objects.get(pk=body["job"]["id"])
    assert (job.reason, job.created_by) == ("cancel it again", operator)
    record.refresh_from_db()
    assert record.status == S.CANCEL == upstream_record(mirror, record)["status"]
    calls = UpstreamCall.objects.filter(operation="invoice_status_update", job=job)
    assert calls.count() == 1 and calls.get().outcome == "ok"


def test_a_field_staff_cannot_push_is_not_repushable(mirror, api_operator):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, amount=777)
    drift = only_drift()

    response = api_operator.post(f"{DRIFT}{drift.pk}/repush/", {"reason": "x"}, format="json")

    assert response.status_code == 400
    drift.refresh_from_db()
    assert drift.state == "open"


def test_repush_needs_the_permission(mirror, api_viewer):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, status=S.CANCEL)
    drift = only_drift()

    response = api_viewer.post(f"{DRIFT}{drift.pk}/repush/", {"reason": "x"}, format="json")

    assert response.status_code == 403


def test_drift_list_filters_by_service_kind_and_state(mirror, api_viewer):  # noqa: F811
    one, two = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2]
    tamper_and_refresh(mirror, one, amount=111)
    tamper_and_refresh(mirror, two, status=S.CANCEL)

    everything = api_viewer.get(DRIFT)
    amounts = api_viewer.get(DRIFT, {"service": "paynet", "kind": "outside_change"})
    wisecp = api_viewer.get(DRIFT, {"service": "wisecp"})
    accepted = api_viewer.get(DRIFT, {"state": "accepted"})

    assert everything.status_code == 200
    assert {r["field"] for r in everything.json()["results"]} == {"amount", "status"}
    row = next(r for r in everything.json()["results"] if r["field"] == "amount")
    assert row["record_type"] == "subscriptions.subscriptioninvoice"
    assert row["record_id"] == one.pk and row["record"] == one.invoice_no
    assert amounts.json()["count"] == 2
    assert wisecp.json()["count"] == accepted.json()["count"] == 0
    assert drift_counts() == {"paynet": {"outside_change": 2}}


def test_bulk_repush_of_statuses_is_one_job_with_the_reason(mirror, operator):  # noqa: F811
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2])
    for record in records:
        tamper_and_refresh(mirror, record, status=S.CANCEL)
    drifts = list(Drift.objects.select_related("content_type"))
    assert len(drifts) == 2

    done, jobs, errors = drift_resolve_many(
        drifts=drifts, actor=operator, reason="bulk back", repush=True
    )

    assert (done, errors) == (2, [])
    (job,) = jobs
    assert job.reason == "bulk back"
    assert set(Drift.objects.values_list("state", "job", flat=False)) == {("repushed", job.pk)}


def test_admin_report_lists_and_accepts_in_bulk(mirror, operator_client):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, amount=4242)
    drift = only_drift()
    url = "/upstream/drift/"

    listed = operator_client.get(url, {"state": "open"})
    page = operator_client.post(
        url, {"action": "accept_selected", "_selected_action": [drift.pk], "index": 0}
    )
    done = operator_client.post(
        url,
        {
            "action": "accept_selected",
            "_selected_action": [drift.pk],
            "index": 0,
            "step": "confirm",
            "reason": "fine",
        },
    )

    assert listed.status_code == 200 and record.invoice_no in listed.content.decode()
    assert page.status_code == 200 and b'name="reason"' in page.content
    assert done.status_code == 302
    drift.refresh_from_db()
    assert (drift.state, drift.resolution_reason) == ("accepted", "fine")


def test_the_dashboard_counts_open_drift_per_upstream(mirror, operator_client):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, amount=321)

    html = operator_client.get("/").content.decode()

    block = html[html.index('id="count-drift-paynet"') :]
    assert '<span class="dash-number">1</span>' in block[: block.index("</a>")]
    assert "state__exact=open&amp;service__exact=paynet" in block[:400] or (
        "state__exact=open&service__exact=paynet" in block[:400]
    )
    wisecp = html[html.index('id="count-drift-wisecp"') :]
    assert '<span class="dash-number">0</span>' in wisecp[: wisecp.index("</a>")]
    # The chart: one bar, Paynet's, of the kind found.
    chart = html.split('id="chart-drift"', 1)[1].split("</svg>", 1)[0]
    bars = re.findall(r'data-series="([^"]+)" data-value="([^"]+)"', chart)
    assert [(s, float(v)) for s, v in bars if float(v)] == [("outside_change", 1.0)]


def test_the_status_preview_marks_records_with_open_drift(mirror, operator_client):  # noqa: F811
    from django.urls import reverse

    drifted, clean = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2]
    tamper_and_refresh(mirror, drifted, amount=999)

    page = operator_client.post(
        reverse("admin:subscriptions_subscriptioninvoice_changelist"),
        {
            "action": "change_status",
            "_selected_action": [drifted.pk, clean.pk],
            "index": 0,
            "status": S.CANCEL,
            "step": "preview",
        },
    )
    single = operator_client.post(
        reverse("admin:subscriptions_subscriptioninvoice_change_status", args=[drifted.pk]),
        {"status": S.CANCEL, "reason": "r", "step": "preview", "idempotency_key": "k"},
    )
    other = operator_client.post(
        reverse("admin:subscriptions_subscriptioninvoice_change_status", args=[clean.pk]),
        {"status": S.CANCEL, "reason": "r", "step": "preview", "idempotency_key": "k"},
    )

    html = page.content.decode()
    assert 'id="drift-warning"' in html
    assert html.count("badge-drift") == 1
    row = html[html.index(drifted.invoice_no) :]
    assert "badge-drift" in row[: row.index("</tr>")]
    assert 'id="drift-warning"' in single.content.decode()
    assert 'id="drift-warning"' not in other.content.decode()


def test_a_selection_repush_is_one_job_whose_approval_weighs_the_whole_selection(
    mirror,  # noqa: F811
    operator,
    settings,
):
    settings.APPROVAL_MIN_ITEMS = 2
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2])
    for record in records:
        tamper_and_refresh(mirror, record, status=S.CANCEL)
    calls_before = UpstreamCall.objects.filter(operation="invoice_status_update").count()

    done, jobs, errors = drift_resolve_many(
        drifts=list(Drift.objects.select_related("content_type")),
        actor=operator,
        reason="one at a time would dodge the threshold",
        repush=True,
    )

    # Two entries re-pushed one by one would each be a push of one record: under the threshold.
    assert (done, errors) == (2, [])
    (job,) = jobs
    assert (job.state, job.total) == (Job.State.AWAITING_APPROVAL, 2)
    assert UpstreamCall.objects.filter(operation="invoice_status_update").count() == calls_before
    for record in records:
        record.refresh_from_db()
        assert record.status == S.CANCEL  # nothing sent until a second person approves


def test_repush_of_a_selection_over_the_api_answers_202_with_its_job(
    mirror,  # noqa: F811
    api_operator,
    operator,
    django_capture_on_commit_callbacks,
):
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2])
    for record in records:
        tamper_and_refresh(mirror, record, status=S.CANCEL)
    ids = list(Drift.objects.values_list("pk", flat=True))

    unknown = api_operator.post(
        f"{DRIFT}repush/", {"ids": [*ids, 99999], "reason": "back"}, format="json"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api_operator.post(
            f"{DRIFT}repush/", {"ids": ids, "reason": "back"}, format="json"
        )

    assert unknown.status_code == 400 and "99999" in str(unknown.json()["ids"])
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["repushed"], body["refused"]) == (2, [])
    job = Job.objects.get(pk=body["job"]["id"])
    assert (job.kind, job.total, job.reason, job.created_by) == (
        "paynet.invoice_status",
        2,
        "back",
        operator,
    )
    for record in records:
        record.refresh_from_db()
        assert record.status == S.WAITING == upstream_record(mirror, record)["status"]


def test_an_item_amount_drift_is_repushed_through_the_wisecp_push_kind(wisecp, api_operator):
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    expected = item.amount
    wisecp.tamper("wisecp", item_id=ITEM_ID, fields={"amount": 999.5})
    invoice_refresh(item.invoice)
    drift = only_drift()

    response = api_operator.post(
        f"{DRIFT}{drift.pk}/repush/", {"reason": "the agreed price"}, format="json"
    )

    assert response.status_code == 200, response.content
    item.refresh_from_db()
    assert item.amount == expected
    drift.refresh_from_db()
    assert drift.state == "repushed" and drift.job is not None
    call = UpstreamCall.objects.get(operation="UpdateInvoiceItem", job=drift.job)
    assert call.outcome == "ok"


def test_a_record_and_field_have_one_open_entry_even_when_written_twice(mirror):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, amount=111)
    tamper_and_refresh(mirror, record, amount=222)

    drift = only_drift()
    assert drift.found == "2.22"  # Paynet counts in kuruş
    twin = Drift.objects.get(pk=drift.pk)
    twin.pk = None
    # What a racing read would write: refused by the database, not only by the code.
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()
    drift.state = Drift.State.ACCEPTED
    drift.save(update_fields=["state"])
    twin.save()  # once the first is resolved, a new open entry may follow
    assert Drift.objects.filter(state="open").count() == 1


def test_a_second_repush_of_the_same_entries_starts_no_second_job(mirror, operator):  # noqa: F811
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2])
    for record in records:
        tamper_and_refresh(mirror, record, status=S.CANCEL)
    drifts = list(Drift.objects.select_related("content_type"))

    first = drift_resolve_many(drifts=drifts, actor=operator, reason="back", repush=True)
    again = drift_resolve_many(drifts=drifts, actor=operator, reason="back", repush=True)

    assert first[0] == 2 and len(first[1]) == 1
    assert again[:2] == (0, [])
    assert Job.objects.filter(kind="paynet.invoice_status", reason="back").count() == 1
    with pytest.raises(ValidationError):
        drift_repush(drift=drifts[0], actor=operator, reason="back")


def test_a_repush_whose_job_was_rejected_is_open_again_after_the_sweep(
    mirror,  # noqa: F811
    operator,
    approver,
    settings,
):
    from upstream.pushes import runner
    from upstream.pushes.approvals import job_reject

    settings.APPROVAL_MIN_ITEMS = 2
    records = list(SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:2])
    for record in records:
        tamper_and_refresh(mirror, record, status=S.CANCEL)
    _done, (job,), _errors = drift_resolve_many(
        drifts=list(Drift.objects.select_related("content_type")),
        actor=operator,
        reason="back",
        repush=True,
    )
    assert set(Drift.objects.values_list("state", flat=True)) == {"repushed"}

    job_reject(job=job, actor=approver, reason="not today")
    swept = runner.sweep()

    # Nothing was sent: the drift is still there, and the report says so again.
    assert swept["drift_reopened"] == 2
    assert set(Drift.objects.values_list("state", "job", flat=False)) == {("open", None)}
    assert drift_counts() == {"paynet": {"outside_change": 2}}


def test_a_repush_that_changed_its_record_stays_resolved_after_the_sweep(
    mirror,  # noqa: F811
    operator,
    django_capture_on_commit_callbacks,
):
    from upstream.pushes import runner

    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, status=S.CANCEL)
    with django_capture_on_commit_callbacks(execute=True):
        drift_resolve_many(
            drifts=list(Drift.objects.select_related("content_type")),
            actor=operator,
            reason="back",
            repush=True,
        )
    record.refresh_from_db()
    assert record.status == S.WAITING

    assert runner.sweep()["drift_reopened"] == 0
    assert only_drift().state == "repushed"


def test_a_single_repush_orphaned_by_a_dead_web_process_is_open_again(mirror, operator):  # noqa: F811

    from django.utils import timezone

    from upstream.pushes import runner

    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, status=S.CANCEL)
    drift = only_drift()
    # What a process killed between taking the entry and linking its job leaves behind.
    Drift.objects.filter(pk=drift.pk).update(
        state="repushed", resolved_by=operator, resolved_at=timezone.now(), job=None
    )
    assert runner.sweep()["drift_reopened"] == 0  # it may still be pushing: wait the lease out
    Drift.objects.filter(pk=drift.pk).update(resolved_at=timezone.now() - timedelta(hours=1))

    assert runner.sweep()["drift_reopened"] == 1
    drift.refresh_from_db()
    assert (drift.state, drift.resolved_by, drift.job) == ("open", None, None)


def test_a_repush_never_undoes_a_push_made_after_the_drift_was_found(wisecp, operator):
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    wisecp.tamper("wisecp", item_id=ITEM_ID, fields={"amount": 999.5})
    invoice_refresh(item.invoice)
    drift = only_drift()
    # Then someone sets the price on purpose, through the push path.
    item.refresh_from_db()
    invoice_item_update(
        item=item,
        changes={"amount": Decimal("500.00")},
        expected_version=item.version,
        actor=operator,
        reason="the new agreed price",
    )
    puts = len(wisecp.ledger("wisecp", "UpdateInvoiceItem"))

    done, jobs, errors = drift_resolve_many(
        drifts=[drift], actor=operator, reason="back to the old price", repush=True
    )

    assert (done, jobs) == (0, [])
    (error,) = errors
    assert "pushed again after the drift was found" in error
    item.refresh_from_db()
    assert item.amount == Decimal("500.00")
    assert len(wisecp.ledger("wisecp", "UpdateInvoiceItem")) == puts
    drift.refresh_from_db()
    assert drift.state == "open"


def test_an_expected_value_that_cannot_be_sent_is_refused_not_a_500(mirror, operator):  # noqa: F811
    record = a_record(S.WAITING)
    tamper_and_refresh(mirror, record, status=S.CANCEL)
    drift = only_drift()
    Drift.objects.filter(pk=drift.pk).update(expected={"not": "a status"})  # an older shape
    drift.refresh_from_db()

    done, jobs, errors = drift_resolve_many(
        drifts=[drift], actor=operator, reason="back", repush=True
    )

    assert (done, jobs) == (0, [])
    (error,) = errors
    assert "cannot be sent" in error
    drift.refresh_from_db()
    assert drift.state == "open"


def test_a_repush_refusal_masks_the_customers_it_names(wisecp, operator):
    # A move into another customer's invoice is refused, and the refusal names both customers;
    # it is read by whoever re-pushes, so people's names are masked (companies' are not
    # personal data).
    item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)
    other = (
        Invoice.objects.exclude(user_id=item.invoice.user_id)
        .filter(company_name="", currency=item.invoice.currency)
        .exclude(full_name="")
        .first()
    )
    now = timezone.now()
    drift = Drift.objects.create(
        service="wisecp",
        content_type=ContentType.objects.get_for_model(InvoiceItem),
        object_id=item.pk,
        record_label=str(item),
        field="invoice",
        expected=other.pk,
        found=item.invoice_id,
        kind=Drift.Kind.OUTSIDE_CHANGE,
        first_seen_at=now,
        last_seen_at=now,
    )

    _done, jobs, errors = drift_resolve_many(
        drifts=[drift], actor=operator, reason="back", repush=True
    )

    assert jobs == [] and errors
    text = " ".join(errors)
    assert item.invoice.company_name == ""  # both are people
    assert item.invoice.full_name not in text and other.full_name not in text
    assert "*" in text  # named, masked


def test_the_admin_says_how_many_entries_a_round_leaves_open(mirror, operator_client, monkeypatch):  # noqa: F811
    monkeypatch.setattr("upstream.admin.drift.DRIFT_AT_ONCE", 1)
    for record in SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:3]:
        tamper_and_refresh(mirror, record, amount=4242)
    assert Drift.objects.filter(state="open").count() == 3
    url = "/upstream/drift/"
    everything = {"action": "accept_selected", "select_across": "1", "index": 0}
    everything["_selected_action"] = list(Drift.objects.values_list("pk", flat=True))

    page = operator_client.post(url, everything)
    done = operator_client.post(
        url, {**everything, "step": "confirm", "reason": "fine"}, follow=True
    )

    assert "2 more of the selection are left open" in page.content.decode()
    assert Drift.objects.filter(state="open").count() == 2
    shown = [str(m) for m in done.context["messages"]]
    assert any("2 more of the selection are left open" in m for m in shown)


def _open(model: type) -> dict[str, Drift]:
    content_type = ContentType.objects.get_for_model(model)
    return {d.field: d for d in Drift.objects.filter(state="open", content_type=content_type)}


@pytest.mark.parametrize("path", ["single", "selection"])
def test_an_items_drifted_price_and_total_go_back_in_one_push_and_its_invoice_drift_closes(
    wisecp, operator, api_operator, path
):
    item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)
    # A push of ours first: the item's price and its invoice's totals are then what we expect.
    invoice_item_update(
        item=item,
        changes={"amount": Decimal("500.00")},
        expected_version=item.version,
        actor=operator,
        reason="the agreed price",
    )
    item.refresh_from_db()
    ours = (item.amount, item.total, Invoice.objects.get(pk=item.invoice_id).total)
    # Someone edits the line at WiseCP: price and total, and WiseCP's invoice totals follow.
    wisecp.tamper(
        "wisecp",
        item_id=ITEM_ID,
        fields={"amount": 999.5, "total": float(Decimal("999.5") * item.quantity)},
    )
    invoice_refresh(item.invoice)
    entries = _open(InvoiceItem)
    assert set(entries) == {"amount", "total"}
    assert "total" in _open(Invoice)  # subtotal, tax and total of the invoice drifted too
    puts = len(wisecp.ledger("wisecp", "UpdateInvoiceItem"))

    # The price entry alone is asked for: its record's total goes back with it.
    if path == "single":
        response = api_operator.post(
            f"{DRIFT}{entries['amount'].pk}/repush/", {"reason": "back to ours"}, format="json"
        )
        assert response.status_code == 200, response.content
    else:
        done, jobs, errors = drift_resolve_many(
            drifts=[entries["amount"]], actor=operator, reason="back to ours", repush=True
        )
        assert (done, len(jobs), errors) == (2, 1, [])  # the total went along
        from upstream.pushes import bulk

        bulk.run_job(jobs[0].pk)

    # One job, one call, carrying the price and the total together.
    sent = wisecp.ledger("wisecp", "UpdateInvoiceItem")[puts:]
    assert len(sent) == 1, sent
    for entry in entries.values():
        entry.refresh_from_db()
    assert entries["amount"].job_id == entries["total"].job_id is not None
    assert {e.state for e in entries.values()} == {"repushed"}
    assert (
        UpstreamCall.objects.filter(
            operation="UpdateInvoiceItem", job=entries["amount"].job_id
        ).count()
        == 1
    )
    item.refresh_from_db()
    invoice = Invoice.objects.get(pk=item.invoice_id)
    assert (item.amount, item.total, invoice.total) == ours
    assert item.total == (item.amount * item.quantity).quantize(Decimal("0.01"))
    # The item's re-push read the invoice back: its totals are ours again, their entries close.
    assert _open(Invoice) == {}
    closed = Drift.objects.filter(content_type=ContentType.objects.get_for_model(Invoice))
    assert {d.state for d in closed} == {"repushed"}
    assert {d.job_id for d in closed} == {entries["amount"].job_id}
    # Had that job ended short elsewhere, the sweep still leaves what it put right closed.
    Job.objects.filter(pk=entries["amount"].job_id).update(state=Job.State.FAILED)
    drift_repushes_settle()
    assert _open(Invoice) == {} and _open(InvoiceItem) == {}
