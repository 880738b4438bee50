"""Call recording and job bookkeeping shared by every integration.

Who acts (`actor`), the same in every service:
- `actor=None` is the system itself: a sync, the sweep, the worker, a management command. It
  passes no permission check and puts no person on the record (call, job, batch). Only code
  that really runs without a person may pass None; a service that takes `actor: User | None`
  says so in its signature.
- A person is a User (`actor: User`): every user-facing service requires one and checks its
  permission with `actor_require`, which refuses None too, so a missing actor is never mistaken
  for the system.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .breaker import breaker_record, breaker_require
from .client import Exchange
from .handlers import handler_for
from .models import Job, JobItem, UpstreamCall
from .texts import to_json

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser


def actor_allowed(actor: User | None, perm: str) -> bool:
    """May this actor do it? The system (None) always may; a person needs the permission."""
    return actor is None or actor.has_perm(perm)


def actor_require(actor: User, perm: str, message: str) -> None:
    """A user-facing service's check: a person holding `perm`. None is refused, not the system."""
    if actor is None or not actor.has_perm(perm):
        raise PermissionDenied(message)


def actor_id_of(actor: User | None) -> int | None:
    """The person to put on a record; None for the system (or an anonymous user)."""
    return actor.pk if actor is not None and actor.is_authenticated else None


def target_of(obj: Model | None) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


def upstream_call_from_exchange(
    exchange: Exchange,
    *,
    actor_id: int | None = None,
    job_id: int | None = None,
    job_item_id: int | None = None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
) -> UpstreamCall:
    return UpstreamCall(
        service=exchange.service,
        operation=exchange.operation,
        method=exchange.method,
        url=exchange.url[:500],
        request_headers=exchange.request_headers,
        request=exchange.request_body,
        status_code=exchange.status_code,
        response=exchange.response_body,
        upstream_code=str(exchange.upstream_code)[:32],
        upstream_message=exchange.upstream_message,
        outcome=exchange.outcome,
        error=exchange.error,
        duration_ms=exchange.duration_ms,
        attempt=exchange.attempt,
        mutating=exchange.mutating,
        created_at=exchange.started_at,
        actor_id=actor_id,
        job_id=job_id,
        job_item_id=job_item_id,
        target_type=target_type,
        target_id=target_id,
        target_repr=target_repr[:200],
    )


class DbCallRecorder:
    """Writes each request as a pending row before it is sent and finishes it after.

    The pending row is committed on its own, outside any transaction, so a crash or a later
    rollback cannot erase the fact that a request went out (the call log is the audit trail).
    """

    def __init__(
        self, *, actor: User | None = None, target: Model | None = None, target_repr: str = ""
    ) -> None:
        self.actor_id = actor_id_of(actor)
        self.target_type, self.target_id = target_of(target)
        self.target_repr = target_repr or (str(target) if target is not None else "")
        self.calls: list[UpstreamCall] = []

    def started(self, exchange: Exchange) -> None:
        call = upstream_call_from_exchange(
            exchange,
            actor_id=self.actor_id,
            target_type=self.target_type,
            target_id=self.target_id,
            target_repr=self.target_repr,
        )
        call.save(force_insert=True)
        exchange.call_id = call.pk
        self.calls.append(call)

    def finished(self, exchange: Exchange) -> None:
        UpstreamCall.objects.filter(pk=exchange.call_id, outcome="pending").update(
            status_code=exchange.status_code,
            response=exchange.response_body,
            upstream_code=str(exchange.upstream_code)[:32],
            upstream_message=exchange.upstream_message,
            outcome=exchange.outcome,
            error=exchange.error,
            duration_ms=exchange.duration_ms,
        )
        # Syncs and refreshes count for the upstream's health like any push.
        breaker_record([exchange])

    @property
    def last_call_id(self) -> int | None:
        return self.calls[-1].pk if self.calls else None


# Jobs ----------------------------------------------------------------------------------------


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
    from .approvals import approval_fields

    handler = handler_for(kind)
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
            **(approval_fields(len(items), amount) if handler.operation else {}),
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
        if job.state == Job.State.QUEUED:
            job_enqueue(job)
    return job


def job_enqueue(job: Job, *, run_after: datetime | None = None) -> None:
    """Queue the job's task after the surrounding transaction commits (never before)."""
    from .tasks import job_run

    job_id = job.pk

    def _enqueue() -> None:
        task = job_run
        if run_after is not None and job_run.get_backend().supports_defer:
            task = job_run.using(run_after=run_after)
        result = task.enqueue(job_id)
        Job.objects.filter(pk=job_id).update(task_id=str(result.id)[:64])

    transaction.on_commit(_enqueue)


def job_cancel(*, job: Job, actor: User) -> Job:
    actor_require(
        actor,
        handler_for(job.kind).permission,
        _("You do not have permission to cancel this job."),
    )
    if job.is_finished:
        raise ValidationError(_("The job has already finished."))
    Job.objects.filter(pk=job.pk).update(cancel_requested=True, cancelled_by=actor)
    job.refresh_from_db()
    if job.state == Job.State.AWAITING_APPROVAL:
        # Never approved, never prepared: close it at once (its frozen entries stay unwritten).
        from .approvals import approval_cancel

        approval_cancel(job)
        job.refresh_from_db()
        return job
    if job.state == Job.State.QUEUED:
        # Nothing runs it yet: cancel the waiting items now rather than waiting for a worker
        # (a frozen selection's remaining entries are written as cancelled items first).
        from .runner import cancel_pending_items, job_finalize
        from .selection import prepare_job

        prepare_job(job.pk)
        cancel_pending_items(job)
        job_finalize(job.pk)
        job.refresh_from_db()
    return job


def job_retry_failed(*, job: Job, actor: User) -> Job:
    """Queue the rejected, failed and in-doubt items again (in-doubt ones are read back first)."""
    actor_require(
        actor, handler_for(job.kind).permission, _("You do not have permission to retry this job.")
    )
    if not job.is_finished:
        raise ValidationError(_("The job is still running; retry when it has finished."))
    breaker_require(handler_for(job.kind).service)
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
    job.refresh_from_db()
    return job


def job_resume_cancelled(*, job: Job, actor: User) -> Job:
    """Queue a cancelled job's unsent items again; each is re-checked against its record just
    before sending, so one that changed meanwhile is skipped, not sent stale."""
    actor_require(
        actor, handler_for(job.kind).permission, _("You do not have permission to resume this job.")
    )
    if not job.is_finished:
        raise ValidationError(_("The job is still running."))
    breaker_require(handler_for(job.kind).service)
    with transaction.atomic():
        cancelled = JobItem.objects.filter(job=job, outcome=JobItem.Outcome.CANCELLED)
        if not cancelled.exists():
            raise ValidationError(_("The job has no cancelled items to resume."))
        _requeue(job, cancelled, actor, cancelled=0, message="")
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
        retried_by=actor,
        retried_at=timezone.now(),
        **counts,
    )
    job_enqueue(job)
