"""Finalize: a job is closed once no item of it is left to do.

Its counters are recounted from the items (never trusted from the running totals), under a lock
on the job row so two workers cannot close it twice; a job whose frozen selection is not fully
written yet is never closed. Cancelled jobs have their waiting items closed as cancelled.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext_noop

from upstream.console.notices import job_finished_announce
from upstream.history.changes import history_source
from upstream.l10n.stored import message_fields, text
from upstream.models import Job, JobItem, RecordChange, RecordClaim, UpstreamCall
from upstream.pushes.claims import release_records
from upstream.pushes.kinds import kind_for
from upstream.pushes.runner.leases import item_holder


def cancel_pending_items(job: Job) -> int:
    """Close the job's waiting items as cancelled; not those in doubt: their write may have
    landed, so they keep their records and are still read back (a read-back sends nothing; one
    that finds the change not there closes the item as cancelled instead of sending it)."""
    pending = JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING, in_doubt=False)
    RecordClaim.objects.filter(
        holder__in=[item_holder(pk) for pk in pending.values_list("pk", flat=True)]
    ).delete()
    return pending.update(
        state=JobItem.State.DONE,
        outcome=JobItem.Outcome.CANCELLED,
        **message_fields(text(gettext_noop("Cancelled before it was sent."))),
        finished_at=timezone.now(),
        lease_until=None,
    )


def take_cancel(job: Job, worker_id: str, unsent: list[int], target_type: str) -> int:
    """The runner stopped sending for the job's cancel: close the items it had claimed but not
    let through (`unsent`) and the waiting ones as cancelled, and note when, all at once, so
    the cancel's answer counts exactly what will not be sent. Returns how many were closed."""
    now = timezone.now()
    with transaction.atomic():
        claimed = JobItem.objects.filter(
            id__in=unsent, claimed_by=worker_id, state=JobItem.State.SENDING
        )
        targets = list(claimed.values_list("target_id", flat=True))
        closed = claimed.update(
            state=JobItem.State.DONE,
            outcome=JobItem.Outcome.CANCELLED,
            **message_fields(text(gettext_noop("Cancelled before it was sent."))),
            finished_at=now,
            lease_until=None,
            claimed_by="",
        )
        # Their write rows were committed at the claim; no call happened.
        UpstreamCall.objects.filter(job_item_id__in=unsent, outcome="pending", url="").delete()
        release_records(holder=worker_id, target_type=target_type, target_ids=targets)
        closed += cancel_pending_items(job)
        Job.objects.filter(pk=job.pk).update(cancel_taken_at=now, heartbeat_at=now)
    return closed


def job_finalize(job_id: int, *, announce: bool = True) -> bool:
    """Close the job if no item is left to do; the counters are recounted from the items.

    Its creator is told (a notice and an e-mail) unless `announce` is off: a single push answered
    in its own request has said how it went already.
    """
    with transaction.atomic():
        jobs = Job.objects.filter(pk=job_id)
        if connection.features.has_select_for_update:
            jobs = jobs.select_for_update()
        job = jobs.get()
        if job.is_finished:
            return True
        if not job.is_prepared:
            return False  # items of its frozen selection are still to be written
        items = JobItem.objects.filter(job_id=job_id)
        if items.filter(state__in=[JobItem.State.PENDING, JobItem.State.SENDING]).exists():
            return False
        counts = dict(
            items.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n")
        )
        job.succeeded = counts.get(JobItem.Outcome.OK, 0)
        job.failed = sum(counts.get(o, 0) for o in JobItem.FAILED_OUTCOMES)
        job.cancelled = counts.get(JobItem.Outcome.CANCELLED, 0)
        job.skipped = counts.get(JobItem.Outcome.SKIPPED, 0)
        if job.cancel_requested and job.cancelled:
            job.state = Job.State.CANCELLED
        elif job.failed == 0:
            job.state = Job.State.SUCCEEDED
        elif job.succeeded == 0:
            job.state = Job.State.FAILED
        else:
            job.state = Job.State.PARTIALLY_FAILED
        job.finished_at = timezone.now()
        job.save(
            update_fields=["succeeded", "failed", "cancelled", "skipped", "state", "finished_at"]
        )
        try:
            handler = kind_for(job.kind)
        except LookupError:
            handler = None
        if handler is not None:
            # What a kind writes as its job closes is the job's doing (its history says so).
            with history_source(
                RecordChange.Source.OPERATION,
                actor_id=job.created_by_id,
                reason=job.reason,
                job_id=job.pk,
            ):
                handler.finished(job)
        if announce:
            job_finished_announce(job)
    return True
