"""Four eyes over time: a push waits for a second person when it, plus what the same person sent
without approval in the last APPROVAL_WINDOW_HOURS, reaches APPROVAL_WINDOW_ITEMS records or
APPROVAL_WINDOW_AMOUNT ₺; split pushes (bulk, single, create, drift re-push) add up."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from upstream.calls.errors import AwaitingApproval
from upstream.groups import OPERATORS
from upstream.models import Job
from upstream.pushes.approvals import approval_reason, approval_window


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture(autouse=True)
def thresholds(settings, queued_tasks):
    """One push waits at 10 records or ₺ 1.000.000; the window at 5 × that, over 24 h."""
    settings.APPROVAL_MIN_ITEMS = 10
    settings.APPROVAL_MIN_AMOUNT = Decimal("1000000")
    settings.APPROVAL_WINDOW_HOURS = 24
    settings.APPROVAL_WINDOW_ITEMS = None
    settings.APPROVAL_WINDOW_AMOUNT = None
    return settings


def waiting(n: int, offset: int = 0):
    ids = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")
    ids = list(ids.values_list("pk", flat=True)[offset : offset + n])
    return SubscriptionInvoice.objects.filter(pk__in=ids)


def bulk(actor, n: int = 9, offset: int = 0) -> Job:
    return subscription_invoice_set_status_bulk(
        records=waiting(n, offset), status=S.CANCEL, actor=actor, reason="split"
    )


def test_bulk_pushes_under_the_threshold_add_up_in_the_window(mirror, operator) -> None:
    # 9 records each, under the 10 of one push: five make 45, the sixth would reach 54 >= 50.
    jobs = [bulk(operator) for _ in range(5)]
    assert {job.state for job in jobs} == {Job.State.QUEUED}
    sixth = bulk(operator)
    assert sixth.state == Job.State.AWAITING_APPROVAL
    usage = approval_window(operator)
    assert (usage.records, usage.hours) == (45, 24)


def test_another_persons_pushes_and_old_ones_do_not_count(
    mirror, operator, groups, django_user_model
):
    other = django_user_model.objects.create_user("operator2", password="pw", is_staff=True)
    other.groups.add(Group.objects.get(name=OPERATORS))
    for _ in range(5):
        bulk(other)
    assert bulk(operator).state == Job.State.QUEUED, "another person's window is theirs"
    Job.objects.filter(created_by=other).update(created_at=timezone.now() - timedelta(hours=25))
    assert bulk(other).state == Job.State.QUEUED, "older than the window"


def test_approved_rejected_and_waiting_pushes_do_not_count(mirror, operator, approver) -> None:
    jobs = [bulk(operator) for _ in range(5)]
    Job.objects.filter(pk=jobs[0].pk).update(decided_by=approver)
    Job.objects.filter(pk=jobs[1].pk).update(state=Job.State.REJECTED)
    assert approval_window(operator).records == 27
    assert bulk(operator).state == Job.State.QUEUED


def test_single_pushes_add_up_by_amount(mirror, operator, settings) -> None:
    records = list(waiting(3))
    amounts = [r.amount for r in records]
    # One push alone never waits; the first two together stay under the window, the third not.
    settings.APPROVAL_WINDOW_AMOUNT = str(sum(amounts) - Decimal("0.01"))
    for record in records[:2]:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="one at a time"
        )
    assert approval_window(operator).amount == sum(amounts[:2])
    with pytest.raises(AwaitingApproval) as waits:
        subscription_invoice_set_status(
            record=records[2], status=S.CANCEL, actor=operator, reason="one at a time"
        )
    assert waits.value.job.state == Job.State.AWAITING_APPROVAL
    assert len(mirror.ledger("paynet", "invoice_status_update")) == 2, "the third was not sent"


def test_the_reason_says_what_the_person_sent(mirror, operator) -> None:
    for _ in range(5):
        bulk(operator)
    reason = approval_reason(9, Decimal("10"), operator)
    assert reason is not None and "last 24 h: 45 records" in reason
    assert approval_reason(1, Decimal("10"), operator) is None


def test_the_operator_is_told_before_confirming_and_the_approver_sees_the_window(
    mirror, operator, approver, operator_client, client
) -> None:
    for _ in range(5):
        bulk(operator)
    records = waiting(9)
    page = operator_client.post(
        reverse("admin:subscriptions_subscriptioninvoice_changelist"),
        {
            "action": "change_status",
            "index": "0",
            "_selected_action": [str(pk) for pk in records.values_list("pk", flat=True)],
            "status": str(S.CANCEL),
            "step": "preview",
        },
    ).content.decode()
    assert 'id="approval-notice"' in page and "45 records" in page

    job = bulk(operator)
    assert job.state == Job.State.AWAITING_APPROVAL
    client.force_login(approver)
    shown = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert 'id="approval-window"' in shown and "45 records" in shown
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(approver)
    window = api.get(f"/api/jobs/{job.pk}/").json()["creator_window"]
    assert window["records"] == 45 and window["hours"] == 24
