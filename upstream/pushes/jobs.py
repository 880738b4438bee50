"""Job bookkeeping every push shares: create, enqueue, cancel, retry, resume.

A job belongs to its creator: cancel, retry, resume and withdraw (a cancel while it awaits
approval) by another person need `upstream.manage_others_jobs` and a reason, kept as a
JobAction and shown on the job. The API and the admin call these same services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.actors import User, actor_allowed, actor_id_of, actor_require
from upstream.calls.breaker import breaker_require
from upstream.l10n.stored import to_json
from upstream.models import Job, JobAction, JobItem
from upstream.pushes.kinds import kind_for
from upstream.pushes.once import once_link

logger = logging.getLogger(__name__)

PERM_MANAGE_OTHERS = "upstream.manage_others_jobs"


def owns_job(actor: User | None, job: Job) -> bool:
    """Did this person start the job? A job the system started (a sync) is nobody's own."""
    creator = job.created_by_id
    return creator is not None and creator == actor_id_of(actor)


def may_steer(actor: User | None, job: Job) -> bool:
    """May this person cancel, retry or resume the job (with a reason when it is not theirs)?"""
    try:
        permission = kind_for(job.kind).permission
    except LookupError:
        return False
    if actor is None or not actor.is_authenticated or not actor.has_perm(permission):
        return False
    return owns_job(actor, job) or actor.has_perm(PERM_MANAGE_OTHERS)


def _steer_require(job: Job, actor: User, reason: str, refused: str) -> tuple[bool, str]:
    """The checks every step on a job shares: the push's permission; for another person's job
    also `upstream.manage_others_jobs` and a reason. Returns (another's job, the reason)."""
    actor_require(actor, kind_for(job.kind).permission, refused)
    reason = (reason or "").strip()
    if owns_job(actor, job):
        return False, reason
    if not actor.has_perm(PERM_MANAGE_OTHERS):
        raise PermissionDenied(
            _(
                "This job belongs to %(creator)s: only they, or a person allowed to manage "
                "others' jobs, may change it."
            )
            % {"creator": job.created_by or _("the system")}
        )
    if not reason:
        raise ValidationError({"reason": _("Give a reason: this job belongs to another person.")})
    return True, reason


def _record_step(job: Job, actor: User, kind: str, on_behalf: bool, reason: str) -> None:
    JobAction.objects.create(
        job_id=job.pk, kind=kind, actor=actor, on_behalf=on_behalf, reason=reason[:2000]
    )


@dataclass(frozen=True)
class NewItem:
    target: Model
    payload: dict[str, Any]
    target_repr: str = ""


def job_create(
    *,
    kind: str,
    title: str,
    items: Iterable[NewItem],
    actor: User | None,
    params: dict[str, Any] | None = None,
    reason: str = "",
    amount: Decimal | None = None,
) -> Job:
    """Create a job with one item per record and enqueue it once the transaction commits.

    A write over an approval threshold (its count, or `amount` ₺) waits for a second person.
    Refused (UpstreamUnavailable) while the upstream's circuit breaker is open.
    """
    from upstream.pushes.approvals import approval_fields

    handler = kind_for(kind)
    if not actor_allowed(actor, handler.permission):
        raise PermissionDenied(_("You do not have permission to run this change."))
    breaker_require(handler.service)
    items = list(items)
    if not items:
        raise ValidationError(_("Nothing to send: no record would change."))
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            title=title[:200],
            title_text=to_json(title),
            params=params or {},
            reason=reason,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            total=len(items),
            amount=amount,
            **(approval_fields(len(items), amount, actor) if handler.operation else {}),
        )
        JobItem.objects.bulk_create(
            [
                JobItem(
                    job=job,
                    position=i,
                    target_type=item.target._meta.label_lower,
                    target_id=str(item.target.pk),
                    target_repr=(item.target_repr or str(item.target))[:200],
                    payload=item.payload,
                )
                for i, item in enumerate(items, start=1)
            ],
            batch_size=1000,
        )
        # A repeated request (the same Idempotency-Key or confirmation) finds this job.
        once_link(job)
        if job.state == Job.State.QUEUED:
            job_enqueue(job)
    return job


def job_enqueue(job: Job, *, run_after: datetime | None = None) -> None:
    """Queue the job's task after the surrounding transaction commits (never before)."""
    from upstream.tasks import job_run

    job_id = job.pk

    def _enqueue() -> None:
        task = job_run
        if run_after is not None and job_run.get_backend().supports_defer:
            task = job_run.using(run_after=run_after)
        result = task.enqueue(job_id)
        Job.objects.filter(pk=job_id).update(task_id=str(result.id)[:64])

    transaction.on_commit(_enqueue)


# How long a cancel waits for the job's runner to stop sending before it answers.
CANCEL_ANSWER_WAIT = 3.0


@dataclass(frozen=True)
class CancelCounts:
    """A cancel's answer: items that will not be sent, and those sent or on their way."""

    not_sent: int
    sent: int


def cancel_counts(job: Job) -> CancelCounts:
    """Once the cancel took hold (or nothing runs the job), exact: what is cancelled or still
    waiting is not sent; everything else went out or is in flight and completes."""
    items = JobItem.objects.filter(job_id=job.pk)
    not_sent = items.filter(
        Q(state=JobItem.State.PENDING) | Q(outcome=JobItem.Outcome.CANCELLED)
    ).count()
    if job.prepared is not None:
        not_sent += max(job.total - job.prepared, 0)  # frozen entries not yet written as items
    sent = items.exclude(
        Q(state=JobItem.State.PENDING)
        | Q(outcome__in=[JobItem.Outcome.CANCELLED, JobItem.Outcome.SKIPPED])
    ).count()
    return CancelCounts(not_sent=not_sent, sent=sent)


def job_cancel(*, job: Job, actor: User, reason: str = "") -> Job:
    """Stop sending; a job awaiting approval is withdrawn. Another person's job needs
    `upstream.manage_others_jobs` and a reason."""
    on_behalf, reason = _steer_require(
        job, actor, reason, _("You do not have permission to cancel this job.")
    )
    if job.is_finished:
        raise ValidationError(_("The job has already finished."))
    withdraw = job.state == Job.State.AWAITING_APPROVAL
    Job.objects.filter(pk=job.pk).update(cancel_requested=True, cancelled_by=actor)
    _record_step(
        job,
        actor,
        JobAction.Kind.WITHDRAW if withdraw else JobAction.Kind.CANCEL,
        on_behalf,
        reason,
    )
    job.refresh_from_db()
    if job.state == Job.State.AWAITING_APPROVAL:
        # Never approved, never prepared: close it at once (its frozen entries stay unwritten).
        from upstream.pushes.approvals import approval_cancel

        approval_cancel(job)
        job.refresh_from_db()
        return job
    if job.state == Job.State.QUEUED:
        # Nothing runs it yet: cancel the waiting items now rather than waiting for a worker
        # (a frozen selection's remaining entries are written as cancelled items first).
        from upstream.pushes.bulk import prepare_job
        from upstream.pushes.runner import cancel_pending_items, job_finalize

        prepare_job(job.pk)
        cancel_pending_items(job)
        job_finalize(job.pk)
        job.refresh_from_db()
    elif not job.inline:
        _wait_for_cancel_to_take_hold(job)
    return job


def _wait_for_cancel_to_take_hold(job: Job) -> None:
    """Answer once the runner stopped sending (within CANCEL_CHECK_EVERY, or its flush), so the
    answer counts exactly what will not be sent. A job no runner holds just now (waiting out a
    pause, its worker gone) sends nothing more either: its next run checks the cancel first."""
    deadline = time.monotonic() + CANCEL_ANSWER_WAIT
    while time.monotonic() < deadline:
        job.refresh_from_db(fields=["state", "cancel_taken_at"])
        if job.cancel_taken_at is not None or job.is_finished:
            break
        time.sleep(0.02)
    job.refresh_from_db()


def job_retry_failed(*, job: Job, actor: User, reason: str = "") -> Job:
    """Queue the rejected, failed and in-doubt items again (in-doubt ones are read back first).
    Another person's job needs `upstream.manage_others_jobs` and a reason."""
    on_behalf, reason = _steer_require(
        job, actor, reason, _("You do not have permission to retry this job.")
    )
    if not job.is_finished:
        raise ValidationError(_("The job is still running; retry when it has finished."))
    breaker_require(kind_for(job.kind).service)
    with transaction.atomic():
        failed = JobItem.objects.filter(job=job, outcome__in=JobItem.FAILED_OUTCOMES)
        if job.inline:
            # A single change that was refused is corrected and sent again from its form (where
            # the rules are checked again); here only one whose outcome is unknown is settled.
            failed = failed.filter(outcome=JobItem.Outcome.IN_DOUBT)
            if not failed.exists():
                raise ValidationError(
                    _(
                        "A single change that was refused is not retried here: make it again "
                        "from the record's page."
                    )
                )
        count = failed.count()
        if not count:
            raise ValidationError(_("The job has no failed items to retry."))
        failed.filter(outcome=JobItem.Outcome.IN_DOUBT).update(in_doubt=True)
        _requeue(job, failed, actor, failed=0)
        _record_step(job, actor, JobAction.Kind.RETRY, on_behalf, reason)
    job.refresh_from_db()
    return job


def job_resume_cancelled(*, job: Job, actor: User, reason: str = "") -> Job:
    """Queue a cancelled job's unsent items again; each is re-checked against its record just
    before sending, so one that changed meanwhile is skipped, not sent stale. Another person's
    job needs `upstream.manage_others_jobs` and a reason."""
    on_behalf, reason = _steer_require(
        job, actor, reason, _("You do not have permission to resume this job.")
    )
    if not job.is_finished:
        raise ValidationError(_("The job is still running."))
    breaker_require(kind_for(job.kind).service)
    with transaction.atomic():
        cancelled = JobItem.objects.filter(job=job, outcome=JobItem.Outcome.CANCELLED)
        if not cancelled.exists():
            raise ValidationError(_("The job has no cancelled items to resume."))
        _requeue(job, cancelled, actor, cancelled=0, message="")
        _record_step(job, actor, JobAction.Kind.RESUME, on_behalf, reason)
    job.refresh_from_db()
    return job


def _requeue(
    job: Job, items: QuerySet[JobItem], actor: User, *, message: str | None = None, **counts: int
) -> None:
    """Put finished items back to pending and the job back in the queue (caller's transaction)."""
    if job.state in (Job.State.REJECTED, Job.State.EXPIRED) or (
        job.approval_expires_at is not None and job.decided_at is None
    ):
        # It never got its second person: sending it now would skip the approval.
        raise ValidationError(_("This job was never approved; start the change again."))
    item_fields: dict[str, object] = {"message": message} if message is not None else {}
    items.update(
        state=JobItem.State.PENDING,
        outcome=JobItem.Outcome.NONE,
        finished_at=None,
        lease_until=None,
        claimed_by="",
        **item_fields,
    )
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.QUEUED,
        finished_at=None,
        cancel_requested=False,
        cancel_taken_at=None,
        retried_by=actor,
        retried_at=timezone.now(),
        **counts,
    )
    job_enqueue(job)
