"""Four-eyes approval: a push over a threshold waits, unsent, for a second person.

Real HTTP against the sandbox; its ledger says what reached Paynet.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from upstream.calls.errors import AwaitingApproval
from upstream.groups import APPROVERS, OPERATORS
from upstream.l10n.formats import money
from upstream.models import Job
from upstream.pushes import bulk, runner
from upstream.pushes.approvals import awaiting_for, job_approve, job_reject


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture(autouse=True)
def thresholds(settings, queued_tasks):
    """Small thresholds so a few records are "large"; jobs wait in the queue until run here."""
    settings.APPROVAL_MIN_ITEMS = 3
    settings.APPROVAL_MIN_AMOUNT = Decimal("1000000")
    settings.APPROVAL_TTL_HOURS = 24
    return settings


def waiting(n: int):
    ids = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:n]
    return SubscriptionInvoice.objects.filter(pk__in=list(ids.values_list("pk", flat=True)))


def big_job(operator, n: int = 3) -> Job:
    return subscription_invoice_set_status_bulk(
        records=waiting(n), status=S.CANCEL, actor=operator, reason="month end clean-up"
    )


def paynet_writes(sandbox) -> list:
    return sandbox.ledger("paynet", "invoice_status_update")


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def job_runs(queued_tasks) -> list[int]:
    return [t.args[0] for t in queued_tasks if t.task.name == "job_run"]


def test_a_push_over_the_item_threshold_waits_unsent_then_runs_once_approved(
    mirror, operator, approver, queued_tasks, django_capture_on_commit_callbacks
):
    records = list(waiting(3))
    with django_capture_on_commit_callbacks(execute=True):
        job = big_job(operator)

    assert job.state == Job.State.AWAITING_APPROVAL and job.total == 3
    assert job.approval_expires_at > timezone.now() + timedelta(hours=23)
    assert job_runs(queued_tasks) == [] and paynet_writes(mirror) == []
    assert job.amount == sum(r.amount for r in records)

    with django_capture_on_commit_callbacks(execute=True):
        job = job_approve(job=job, actor=approver)

    assert job.state == Job.State.QUEUED and job.decided_by == approver
    assert job_runs(queued_tasks) == [job.pk]
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.succeeded == 3
    assert len(paynet_writes(mirror)) == 3


def test_a_push_under_both_thresholds_is_queued_at_once(mirror, operator):
    job = big_job(operator, n=2)
    assert job.state == Job.State.QUEUED


def test_a_push_over_the_amount_threshold_waits_too(mirror, operator, settings):
    records = waiting(2)
    settings.APPROVAL_MIN_AMOUNT = sum(r.amount for r in records)
    job = subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=operator, reason="r"
    )
    assert job.state == Job.State.AWAITING_APPROVAL


@pytest.mark.parametrize("who", ["creator", "superuser creator"])
def test_the_creator_can_never_approve_their_own_job(mirror, operator, admin_user, who):
    creator = admin_user if who == "superuser creator" else operator
    job = big_job(creator)

    with pytest.raises(PermissionDenied):
        job_approve(job=job, actor=creator)
    answer = api(creator).post(f"/api/jobs/{job.pk}/approve/", {}, format="json")

    assert answer.status_code == 403
    job.refresh_from_db()
    assert job.state == Job.State.AWAITING_APPROVAL and paynet_writes(mirror) == []


def test_a_superuser_who_did_not_start_it_may_approve(mirror, operator, admin_user):
    job = big_job(operator)
    assert job_approve(job=job, actor=admin_user).state == Job.State.QUEUED


def test_an_operator_without_the_permission_cannot_approve(mirror, operator, django_user_model):
    other = django_user_model.objects.create_user("op2", is_staff=True)
    other.groups.add(Group.objects.get(name=OPERATORS))
    job = big_job(operator)

    assert api(other).post(f"/api/jobs/{job.pk}/approve/", {}, format="json").status_code == 403
    assert awaiting_for(other).count() == 0


def test_a_rejection_needs_a_reason_and_sends_nothing(mirror, operator, approver):
    job = big_job(operator)

    with pytest.raises(ValidationError):
        job_reject(job=job, actor=approver, reason="  ")
    answer = api(approver).post(
        f"/api/jobs/{job.pk}/reject/", {"reason": "wrong month"}, format="json"
    )

    assert answer.status_code == 200 and answer.json()["job"]["state"] == "rejected"
    job.refresh_from_db()
    assert job.rejection_reason == "wrong month" and job.decided_by == approver
    assert job.is_finished
    bulk.run_job(job.pk)
    assert paynet_writes(mirror) == []
    again = api(approver).post(f"/api/jobs/{job.pk}/approve/", {}, format="json")
    assert again.status_code == 400 and "not waiting for approval" in again.json()["detail"]


def test_an_approval_not_given_in_time_expires(mirror, operator, approver, settings):
    job = big_job(operator)
    Job.objects.filter(pk=job.pk).update(approval_expires_at=timezone.now() - timedelta(minutes=1))

    assert runner.sweep()["approvals_expired"] == 1

    job.refresh_from_db()
    assert job.state == Job.State.EXPIRED and job.is_finished
    with pytest.raises(ValidationError):
        job_approve(job=job, actor=approver)
    assert paynet_writes(mirror) == []


def test_approving_after_the_deadline_is_refused_even_before_the_sweep(mirror, operator, approver):
    job = big_job(operator)
    Job.objects.filter(pk=job.pk).update(approval_expires_at=timezone.now() - timedelta(minutes=1))

    with pytest.raises(ValidationError, match="ran out"):
        job_approve(job=job, actor=approver)

    assert Job.objects.get(pk=job.pk).state == Job.State.EXPIRED


def test_the_approval_runs_the_frozen_selection_not_what_the_list_holds_now(
    mirror, operator, approver
):
    first, second, third = list(waiting(3))
    job = big_job(operator)
    # Between the request and the approval: one record moves on, a new one appears.
    SubscriptionInvoice.objects.filter(pk=second.pk).update(status=S.EXTERNAL_CHARGED)
    later = SubscriptionInvoice.objects.create(
        subscription=first.subscription,
        invoice_id="later",
        invoice_no="LATER-1",
        amount=5,
        status=S.WAITING,
    )

    job_approve(job=job, actor=approver)
    bulk.run_job(job.pk)

    job.refresh_from_db()
    sent = {e["request"]["invoice_no"] for e in paynet_writes(mirror)}
    assert sent == {first.invoice_no, third.invoice_no}
    assert job.skipped == 1 and later.invoice_no not in sent


def test_a_single_push_over_the_amount_waits_for_approval_and_a_repeat_says_so(
    mirror, operator, approver, settings
):
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("-amount").first()
    settings.APPROVAL_MIN_AMOUNT = record.amount

    with pytest.raises(AwaitingApproval) as waiting_for:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="r", idempotency_key="k1"
        )
    job = waiting_for.value.job
    with pytest.raises(AwaitingApproval):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="r", idempotency_key="k1"
        )

    assert Job.objects.count() == 1 and job.inline and job.state == "awaiting_approval"
    assert paynet_writes(mirror) == []
    job_approve(job=job, actor=approver)
    bulk.run_job(job.pk)
    record.refresh_from_db()
    assert record.status == S.CANCEL and len(paynet_writes(mirror)) == 1


def test_the_api_answers_202_with_the_job_for_a_single_push_that_waits(
    mirror, operator, api_operator, settings
):
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("-amount").first()
    settings.APPROVAL_MIN_AMOUNT = record.amount

    answer = api_operator.post(
        f"/api/subscription-invoices/{record.pk}/set-status/",
        {"status": 5, "reason": "big one"},
        format="json",
    )

    assert answer.status_code == 202, answer.content
    assert answer.json()["job"]["state"] == "awaiting_approval"
    assert "approval" in answer.json()["detail"]
    assert paynet_writes(mirror) == []


def test_a_live_bulk_push_asks_the_approver_to_type_the_number_of_records(
    mirror, operator, approver, settings
):
    job = big_job(operator)
    settings.PAYNET_BASE_URL = "https://api.paynet.com.tr"

    with pytest.raises(ValidationError, match="Type the number"):
        job_approve(job=job, actor=approver)
    with pytest.raises(ValidationError):
        job_approve(job=job, actor=approver, confirm_count=2)

    assert job_approve(job=job, actor=approver, confirm_count=3).state == Job.State.QUEUED


def test_the_finance_approvers_group_exists_and_operators_cannot_approve(groups):
    approve = Permission.objects.get(codename="approve_job")
    assert approve in Group.objects.get(name=APPROVERS).permissions.all()
    assert approve not in Group.objects.get(name=OPERATORS).permissions.all()


def test_the_job_page_shows_the_creators_preview_and_the_buttons_to_the_approver_only(
    mirror, operator, approver, client
):
    records = list(waiting(3))
    job = big_job(operator)
    url = reverse("admin:upstream_job_change", args=[job.pk])

    client.force_login(approver)
    page = client.get(url).content.decode()
    assert 'id="approve-button"' in page and 'id="reject-form"' in page
    assert "month end clean-up" in page
    assert all(r.invoice_no in page for r in records)
    client.force_login(operator)
    own = client.get(url).content.decode()
    assert 'id="approve-button"' not in own and "another person must approve" in own


def test_approving_from_the_job_page_and_the_forbidden_page_for_the_creator(
    mirror, operator, approver, django_user_model, client
):
    second = django_user_model.objects.create_user("approver2", is_staff=True)
    second.groups.add(Group.objects.get(name=APPROVERS))
    job = big_job(approver)
    approve_url = reverse("admin:upstream_job_approve", args=[job.pk])

    client.force_login(approver)
    refused = client.post(approve_url)
    page = refused.content.decode()
    assert refused.status_code == 403 and "another person must approve" in page
    assert reverse("admin:upstream_job_change", args=[job.pk]) in page  # a way back

    client.force_login(second)
    done = client.post(approve_url)
    assert done.status_code == 302
    assert Job.objects.get(pk=job.pk).state == Job.State.QUEUED


def test_rejecting_from_the_job_page(mirror, operator, approver, client):
    job = big_job(operator)
    client.force_login(approver)

    client.post(reverse("admin:upstream_job_reject", args=[job.pk]), {"reason": "duplicate"})

    job.refresh_from_db()
    assert job.state == Job.State.REJECTED and job.rejection_reason == "duplicate"


def test_approvers_see_what_waits_for_them_in_the_job_list(mirror, operator, approver, client):
    job = big_job(operator)
    subscription_invoice_set_status_bulk(  # their own: not theirs to approve
        records=SubscriptionInvoice.objects.filter(
            pk__in=list(
                SubscriptionInvoice.objects.filter(status=S.WAITING)
                .order_by("-pk")
                .values_list("pk", flat=True)[:3]
            )
        ),
        status=S.CANCEL,
        actor=approver,
        reason="mine",
    )
    client.force_login(approver)

    listed = client.get(reverse("admin:upstream_job_changelist") + "?approval=mine")

    assert [j.pk for j in listed.context["cl"].result_list] == [job.pk]


def test_a_cancelled_awaiting_job_sends_nothing(mirror, operator):
    from upstream.pushes.jobs import job_cancel

    job = big_job(operator)
    job = job_cancel(job=job, actor=operator)

    assert job.state == Job.State.CANCELLED and job.cancelled == 3
    assert bulk.parse(Job.objects.only("selection").get(pk=job.pk).selection)
    assert paynet_writes(mirror) == []


def test_a_stray_task_for_a_job_awaiting_approval_sends_nothing(mirror, operator):
    job = big_job(operator)

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.AWAITING_APPROVAL and job.prepared == 0
    assert not job.items.exists() and paynet_writes(mirror) == []


def test_a_job_cancelled_or_rejected_before_approval_cannot_be_resumed_or_retried(
    mirror, operator, approver
):
    from upstream.pushes.jobs import job_cancel, job_resume_cancelled

    cancelled = job_cancel(job=big_job(operator), actor=operator)
    assert not cancelled.items.exists(), "withdrawn before approval: nothing was even written"
    with pytest.raises(ValidationError):
        job_resume_cancelled(job=cancelled, actor=operator)

    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("-amount").first()
    from django.conf import settings

    settings.APPROVAL_MIN_AMOUNT = record.amount
    with pytest.raises(AwaitingApproval) as waiting_for:
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")
    rejected = job_reject(job=waiting_for.value.job, actor=approver, reason="no")
    with pytest.raises(ValidationError, match="never approved"):
        job_resume_cancelled(job=rejected, actor=operator)
    assert paynet_writes(mirror) == []


def test_closing_expired_jobs_never_touches_one_approved_meanwhile(mirror, operator, approver):
    from upstream.pushes.approvals import _close

    job = big_job(operator)
    stale = Job.objects.filter(pk=job.pk)  # what the sweep read before the approval
    job_approve(job=job, actor=approver)

    _close(stale, Job.State.EXPIRED)

    assert Job.objects.get(pk=job.pk).state == Job.State.QUEUED


def test_approving_past_the_deadline_is_refused_under_the_lock(mirror, operator, approver):
    from unittest import mock

    job = big_job(operator)
    Job.objects.filter(pk=job.pk).update(approval_expires_at=timezone.now() - timedelta(seconds=1))

    # Even if nothing expired it first (the sweep and this approval crossed).
    with mock.patch("upstream.pushes.approvals.expire_approvals"), pytest.raises(ValidationError):
        job_approve(job=job, actor=approver)

    assert Job.objects.get(pk=job.pk).state == Job.State.AWAITING_APPROVAL


def test_a_credit_line_weighs_its_absolute_amount():
    from billing.pushes import at_stake as _at_stake

    assert _at_stake(Decimal("100"), Decimal("-10000000")) == Decimal("10000100")
    assert _at_stake(Decimal("-600000"), Decimal("-600000")) == Decimal("600000")


def test_the_approval_page_shows_each_records_customer_amount_and_change(
    mirror, operator, approver, viewer, client
):
    records = list(waiting(3))
    job = big_job(operator)
    url = reverse("admin:upstream_job_change", args=[job.pk])
    client.force_login(approver)
    client.cookies["django_language"] = "en"
    page = client.get(url).content.decode()
    rows = page.split('id="approval-sample"')[1].split("</table>")[0]
    for record in records:
        row = rows.split(f"<td>{record.invoice_no}</td>")[1].split("</tr>")[0]
        assert record.subscription.name_surname in row  # approvers may see names
        assert money(record.amount) in row
        assert f"<td>{record.get_status_display()}</td><td>Cancelled</td>" in row
    total = sum((r.amount for r in records), Decimal("0"))
    assert f'id="approval-sample-total">{money(total)}<' in rows
    client.force_login(viewer)
    masked = client.get(url).content.decode().split('id="approval-sample"')[1]
    assert records[0].subscription.name_surname not in masked and "***" in masked


@pytest.mark.django_db
def test_the_approval_sample_reads_the_lowest_ids_without_the_whole_selection(operator):
    from upstream.pushes.bulk import lowest_ids

    job = Job.objects.create(
        kind="paynet.invoice_status",
        title="t",
        created_by=operator,
        total=6,
        prepared=0,
        selection="907:0,12:3,5000:0,3:0,,44:5,8",
    )
    with CaptureQueriesContext(connection) as queries:
        assert lowest_ids(job.pk, 4) == [3, 8, 12, 44]
    assert lowest_ids(job.pk, 50) == [3, 8, 12, 44, 907, 5000]
    if connection.vendor == "postgresql":
        # The database splits it and sends back the ids asked for, not the selection.
        (sql,) = [q["sql"] for q in queries]
        assert "unnest(string_to_array(selection" in sql and "LIMIT 4" in sql
