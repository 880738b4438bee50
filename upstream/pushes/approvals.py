"""Four-eyes approval: a push over a threshold waits, unsent, for a second person.

The job is created as it would run (its frozen selection, target, reason and preview totals)
in state `awaiting_approval`; nothing is queued. Another person holding `upstream.approve_job`
approves it (it is queued as it was frozen) or rejects it with a reason; one left undecided
expires after APPROVAL_TTL_HOURS. The creator never decides their own job, superuser or not.

Four eyes over time: a push also waits when it, plus what the same person sent without
approval in the last APPROVAL_WINDOW_HOURS (single pushes, creates, bulk pushes and drift
re-pushes alike: every write is a job), reaches APPROVAL_WINDOW_ITEMS records or
APPROVAL_WINDOW_AMOUNT ₺; so a push split into pieces under the thresholds still meets a
second person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.actors import User, actor_id_of
from upstream.calls.modes import upstream_mode
from upstream.console.notices import job_finished_announce
from upstream.l10n.formats import money
from upstream.models import Job, JobItem
from upstream.pushes.jobs import job_enqueue
from upstream.pushes.kinds import kind_for, registered_kinds

PERM_APPROVE = "upstream.approve_job"


@dataclass(frozen=True)
class WindowUsage:
    """What one person sent without a second person's approval in the window."""

    hours: float
    records: int
    amount: Decimal


def _window_items() -> int:
    value = getattr(settings, "APPROVAL_WINDOW_ITEMS", None)
    return int(value) if value not in (None, "") else 5 * settings.APPROVAL_MIN_ITEMS


def _window_amount() -> Decimal:
    value = getattr(settings, "APPROVAL_WINDOW_AMOUNT", None)
    return Decimal(value) if value not in (None, "") else 5 * settings.APPROVAL_MIN_AMOUNT


def approval_window(actor: User | None, *, before: datetime | None = None) -> WindowUsage:
    """Records and ₺ `actor` pushed without approval in the APPROVAL_WINDOW_HOURS before
    `before` (now): writes only (a refresh reads), not those awaiting approval, rejected,
    expired or approved by another person; a cancelled job's unsent items do not count."""
    hours = float(getattr(settings, "APPROVAL_WINDOW_HOURS", 24))
    person = actor_id_of(actor)
    if person is None or hours <= 0:
        return WindowUsage(hours, 0, Decimal("0"))
    end = before or timezone.now()
    writes = [kind for kind in registered_kinds() if kind_for(kind).operation]
    jobs = Job.objects.filter(
        created_by_id=person,
        kind__in=writes,
        created_at__gte=end - timedelta(hours=hours),
        created_at__lt=end,
        decided_by__isnull=True,
    ).exclude(state__in=[Job.State.AWAITING_APPROVAL, Job.State.REJECTED, Job.State.EXPIRED])
    row = jobs.aggregate(
        records=Coalesce(Sum(F("total") - F("cancelled")), 0),
        amount=Sum("amount"),
    )
    return WindowUsage(hours, max(0, int(row["records"])), Decimal(row["amount"] or 0))


def approval_reason(count: int, amount: Decimal | None, actor: User | None = None) -> str | None:
    """Why a push of `count` records worth `amount` ₺ by `actor` waits for a second person
    (its own size, or with the person's window), or None when it goes at once."""
    # Read first, whatever the size: a launch takes the same statements for 20 or 200 records.
    usage = approval_window(actor)
    if count >= settings.APPROVAL_MIN_ITEMS:
        return _("%(count)s records is at or over the %(limit)s-record threshold.") % {
            "count": count,
            "limit": settings.APPROVAL_MIN_ITEMS,
        }
    if amount is not None and amount >= settings.APPROVAL_MIN_AMOUNT:
        return _("%(amount)s is at or over the %(limit)s threshold.") % {
            "amount": money(amount),
            "limit": money(settings.APPROVAL_MIN_AMOUNT),
        }
    if count + usage.records >= _window_items() or (amount or 0) + usage.amount >= _window_amount():
        return (
            window_text(usage)
            + " "
            + _("With this push that reaches %(records)s records or %(amount)s in %(hours)s h.")
            % {
                "records": _window_items(),
                "amount": money(_window_amount()),
                "hours": f"{usage.hours:g}",
            }
        )
    return None


def window_text(usage: WindowUsage) -> str:
    """ "Your pushes in the last 24 h: 480 records, ₺ 210.000,00." """
    return _(
        "Pushes without approval in the last %(hours)s h: %(records)s records, %(amount)s."
    ) % {
        "hours": f"{usage.hours:g}",
        "records": usage.records,
        "amount": money(usage.amount),
    }


def approval_needed(count: int, amount: Decimal | None, actor: User | None = None) -> bool:
    """Is a push of `count` records worth `amount` ₺ over a threshold, alone or added to what
    `actor` sent without approval in the window?"""
    return approval_reason(count, amount, actor) is not None


def approval_fields(
    count: int, amount: Decimal | None, actor: User | None = None
) -> dict[str, object]:
    """The new job's state (and expiry) for its size: awaiting approval or queued."""
    if not approval_needed(count, amount, actor):
        return {"state": Job.State.QUEUED}
    return {
        "state": Job.State.AWAITING_APPROVAL,
        "approval_expires_at": timezone.now() + timedelta(hours=settings.APPROVAL_TTL_HOURS),
    }


def awaiting_message(job: Job) -> str:
    return _("Job #%(id)s waits for a second person's approval; nothing is sent until then.") % {
        "id": job.pk
    }


def can_decide(actor: User | None, job: Job) -> bool:
    """May this person approve or reject the job (not whether it still waits)?"""
    if actor is None or not actor.is_authenticated or not actor.has_perm(PERM_APPROVE):
        return False
    return job.created_by_id != actor_id_of(actor)


def _decide(job: Job, actor: User) -> Job:
    """The job, locked, after the checks every decision shares (in the caller's transaction)."""
    if job.created_by_id is not None and job.created_by_id == actor_id_of(actor):
        raise PermissionDenied(_("You started this job: another person must approve it."))
    if actor is None or not actor.is_authenticated or not actor.has_perm(PERM_APPROVE):
        raise PermissionDenied(_("You do not have permission to approve jobs."))
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if locked.state == Job.State.AWAITING_APPROVAL and _expired(locked):
        raise ValidationError(_("The approval time ran out; the job has expired."))
    if locked.state == Job.State.EXPIRED:
        raise ValidationError(_("The approval time ran out; the job has expired."))
    if locked.state != Job.State.AWAITING_APPROVAL:
        raise ValidationError(
            _("The job is not waiting for approval (it is %(state)s).")
            % {"state": locked.get_state_display()}
        )
    return locked


def job_approve(*, job: Job, actor: User, confirm_count: int | None = None) -> Job:
    """Queue the job exactly as it was frozen; `confirm_count` must match when it is required."""
    expire_approvals()  # one past its time is closed first, whatever the sweep's rhythm
    with transaction.atomic():
        locked = _decide(job, actor)
        if count_confirmation_required(locked) and confirm_count != locked.total:
            raise ValidationError(
                {
                    "confirm_count": _(
                        "Type the number of records (%(count)s) to approve a live push."
                    )
                    % {"count": locked.total}
                }
            )
        Job.objects.filter(pk=locked.pk).update(
            state=Job.State.QUEUED, decided_by=actor, decided_at=timezone.now()
        )
        job_enqueue(locked)
    job.refresh_from_db()
    return job


def job_reject(*, job: Job, actor: User, reason: str) -> Job:
    """Close the job unsent; the reason is kept on it."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give a reason for the rejection.")})
    expire_approvals()
    with transaction.atomic():
        locked = _decide(job, actor)
        _close(
            Job.objects.filter(pk=locked.pk),
            Job.State.REJECTED,
            decided_by=actor,
            decided_at=timezone.now(),
            rejection_reason=reason[:2000],
        )
    job.refresh_from_db()
    return job


def approval_cancel(job: Job) -> None:
    """The creator withdrew a job awaiting approval: closed as cancelled, nothing sent."""
    with transaction.atomic():
        _close(Job.objects.filter(pk=job.pk), Job.State.CANCELLED, cancelled=job.total)


def expire_approvals() -> int:
    """Close the jobs whose approval time ran out (the sweep runs this)."""
    with transaction.atomic():
        due = Job.objects.filter(
            state=Job.State.AWAITING_APPROVAL, approval_expires_at__lt=timezone.now()
        )
        ids = list(due.values_list("pk", flat=True))
        if ids:
            _close(Job.objects.filter(pk__in=ids), Job.State.EXPIRED)
    return len(ids)


def _expired(job: Job) -> bool:
    return job.approval_expires_at is not None and job.approval_expires_at < timezone.now()


def _close(jobs: QuerySet[Job], state: str, **fields: object) -> None:
    """Finish jobs that never ran: their items (a single push has one) did not go out.

    Only jobs still awaiting approval, locked: one approved (or decided) meanwhile is left alone.
    """
    now = timezone.now()
    jobs = Job.objects.filter(
        pk__in=list(
            jobs.filter(state=Job.State.AWAITING_APPROVAL)
            .select_for_update()
            .values_list("pk", flat=True)
        )
    )
    message = (
        _("Not sent: the job was rejected.")
        if state == Job.State.REJECTED
        else _("Not sent: nobody approved the job in time.")
    )
    if state == Job.State.CANCELLED:
        message = _("Cancelled before it was sent.")
    items = JobItem.objects.filter(job__in=jobs, state=JobItem.State.PENDING)
    cancelled = items.update(
        state=JobItem.State.DONE,
        outcome=JobItem.Outcome.CANCELLED,
        message=message,
        finished_at=now,
    )
    jobs.update(**{"cancelled": cancelled, **fields, "state": state, "finished_at": now})
    for job in jobs:
        job_finished_announce(job)


def count_confirmation_required(job: Job) -> bool:
    """A live bulk push over the threshold: the approver types its number of records."""
    service = kind_for(job.kind).service
    return (
        not job.inline
        and job.total >= settings.APPROVAL_MIN_ITEMS
        and upstream_mode(service) == "live"
    )


def awaiting_for(actor: User) -> QuerySet[Job]:
    """The jobs this person could approve now: awaiting, not expired, started by someone else."""
    if actor is None or not actor.is_authenticated or not actor.has_perm(PERM_APPROVE):
        return Job.objects.none()
    return (
        Job.objects.filter(
            state=Job.State.AWAITING_APPROVAL, approval_expires_at__gte=timezone.now()
        )
        .exclude(created_by_id=actor.pk)
        .order_by("created_at")
    )
