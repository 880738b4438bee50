"""A job belongs to its creator: cancel, retry, resume and withdraw by another person need
`upstream.manage_others_jobs` (approvers have it) and a reason, which is kept and shown. The
services, the API and the admin answer the same."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from subscriptions.pushes import INVOICE_STATUS_KIND
from upstream.groups import APPROVERS, OPERATORS
from upstream.models import Job, JobAction, JobItem
from upstream.pushes.jobs import (
    job_cancel,
    job_resume_cancelled,
    job_retry_failed,
    may_steer,
)


@pytest.fixture(autouse=True)
def _nothing_runs(queued_tasks):
    """Jobs are queued, never run: only who may steer them is tested here."""


@pytest.fixture
def other_operator(groups, django_user_model):
    user = django_user_model.objects.create_user("operator2", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS))
    return user


def _job(creator, state: str, outcomes: list[str], **fields) -> Job:
    finished = state not in (Job.State.QUEUED, Job.State.AWAITING_APPROVAL)
    job = Job.objects.create(
        kind=INVOICE_STATUS_KIND,
        title="Set 2 payment records to cancelled",
        created_by=creator,
        state=state,
        total=len(outcomes),
        failed=sum(o == JobItem.Outcome.FAILED for o in outcomes),
        cancelled=sum(o == JobItem.Outcome.CANCELLED for o in outcomes),
        finished_at=timezone.now() if finished else None,
        **fields,
    )
    for n, outcome in enumerate(outcomes, start=1):
        JobItem.objects.create(
            job=job,
            position=n,
            target_type="subscriptions.subscriptioninvoice",
            target_id=str(n),
            target_repr=f"#{n}",
            state=JobItem.State.DONE if outcome else JobItem.State.PENDING,
            outcome=outcome,
        )
    return job


def queued(creator) -> Job:
    return _job(creator, Job.State.QUEUED, ["", ""])


def failed(creator) -> Job:
    return _job(creator, Job.State.FAILED, [JobItem.Outcome.FAILED] * 2)


def cancelled(creator) -> Job:
    return _job(creator, Job.State.CANCELLED, [JobItem.Outcome.CANCELLED] * 2)


def awaiting(creator) -> Job:
    return _job(
        creator,
        Job.State.AWAITING_APPROVAL,
        ["", ""],
        approval_expires_at=timezone.now() + timedelta(hours=1),
    )


STEPS = [
    pytest.param(job_cancel, queued, Job.State.CANCELLED, "cancel", id="cancel"),
    pytest.param(job_cancel, awaiting, Job.State.CANCELLED, "withdraw", id="withdraw"),
    pytest.param(job_retry_failed, failed, Job.State.QUEUED, "retry", id="retry"),
    pytest.param(job_resume_cancelled, cancelled, Job.State.QUEUED, "resume", id="resume"),
]


@pytest.mark.parametrize(("service", "make", "state", "kind"), STEPS)
def test_another_operator_may_not_steer_the_creators_job(
    operator, other_operator, service, make, state, kind
):
    job = make(operator)
    before = job.state
    assert not may_steer(other_operator, job)
    with pytest.raises(PermissionDenied):
        service(job=job, actor=other_operator, reason="I thought it was mine")
    job.refresh_from_db()
    assert job.state == before and not JobAction.objects.exists()


@pytest.mark.parametrize(("service", "make", "state", "kind"), STEPS)
def test_the_creator_steers_without_a_reason(operator, service, make, state, kind):
    job = make(operator)
    job = service(job=job, actor=operator)
    assert job.state == state
    step = JobAction.objects.get(job=job)
    assert (step.kind, step.actor, step.on_behalf, step.reason) == (kind, operator, False, "")


@pytest.mark.parametrize(("service", "make", "state", "kind"), STEPS)
def test_an_approver_steers_anothers_job_only_with_a_reason(
    operator, approver, service, make, state, kind
):
    job = make(operator)
    assert may_steer(approver, job)
    with pytest.raises(ValidationError) as refused:
        service(job=job, actor=approver, reason="  ")
    assert "reason" in refused.value.message_dict
    job = service(job=job, actor=approver, reason="Müşteri aradı: durdurun")
    assert job.state == state
    step = JobAction.objects.get(job=job)
    assert (step.kind, step.actor, step.on_behalf) == (kind, approver, True)
    assert step.reason == "Müşteri aradı: durdurun"


def test_the_groups_give_the_permission_to_approvers_only(operator, approver, viewer):
    assert approver.has_perm("upstream.manage_others_jobs")
    assert not operator.has_perm("upstream.manage_others_jobs")
    assert not Group.objects.get(name=OPERATORS).permissions.filter(codename="manage_others_jobs")
    assert Group.objects.get(name=APPROVERS).permissions.filter(codename="manage_others_jobs")


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.mark.parametrize(
    ("make", "path"),
    [
        pytest.param(queued, "cancel", id="cancel"),
        pytest.param(awaiting, "cancel", id="withdraw"),
        pytest.param(failed, "retry-failed", id="retry"),
        pytest.param(cancelled, "resume", id="resume"),
    ],
)
def test_the_api_answers_the_same(operator, other_operator, approver, make, path):
    job = make(operator)
    url = f"/api/jobs/{job.pk}/{path}/"
    assert _api(other_operator).post(url, {"reason": "x"}, format="json").status_code == 403
    missing = _api(approver).post(url, {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json(), missing.content
    done = _api(approver).post(url, {"reason": "on call"}, format="json")
    assert done.status_code in (200, 202), done.content
    shown = _api(operator).get(f"/api/jobs/{job.pk}/").json()["actions"]
    assert [(a["actor"], a["on_behalf"], a["reason"]) for a in shown] == [
        ("approver", True, "on call")
    ]


def test_the_admin_answers_the_same_and_shows_who_and_why(
    operator, other_operator, approver, client
):
    job = queued(operator)
    url = reverse("admin:upstream_job_cancel", args=[job.pk])
    client.force_login(other_operator)
    page = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert 'id="job-cancel"' not in page
    client.post(url, {"confirm": "yes", "reason": "x"})
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and not JobAction.objects.exists()

    client.force_login(approver)
    confirm = client.get(url).content.decode()
    assert 'id="job-confirm-reason"' in confirm
    client.post(url, {"confirm": "yes", "reason": ""})
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED, "no reason, no cancel"
    client.post(url, {"confirm": "yes", "reason": "Yanlış seçim"})
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    client.force_login(operator)
    page = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert 'id="job-actions"' in page and "Yanlış seçim" in page and "approver" in page
