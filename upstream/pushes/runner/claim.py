"""Claim: a chunk of pending items taken for sending, in one short transaction.

Each item's record is claimed too (one push at a time per upstream record, across processes),
the chunk is marked sending in one UPDATE with this worker's lease, the handler re-checks each
record against what was previewed, and the pending call rows of the writes are committed, all
before any request leaves. Items whose record another push holds stay pending for a moment.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_noop

from upstream.l10n.stored import message_fields, text
from upstream.models import Job, JobItem, RecordClaim
from upstream.pushes.claims import claim_records, release_records
from upstream.pushes.kinds import JobKind, WorkItem, kind_for
from upstream.pushes.runner.calls import reserve_calls
from upstream.pushes.runner.leases import item_holder, lease_length

# A record another push holds is looked at again after this pause.
CLAIM_BUSY_PAUSE = timedelta(seconds=1)


def claim_items(
    job: Job, worker_id: str, limit: int, handler: JobKind | None = None
) -> list[WorkItem]:
    """Claim up to `limit` pending items and their records, in one short transaction.

    In that transaction each item's record is claimed (one push at a time per record), a
    pending call-log row is committed for the write it will send, and the handler re-checks the
    record against what was previewed. Items whose record another push holds stay pending and
    are looked at again a moment later.
    """
    handler = handler or kind_for(job.kind)
    now = timezone.now()
    lease_until = now + lease_length()
    with transaction.atomic():
        pending = (
            JobItem.objects.filter(job_id=job.pk, state=JobItem.State.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .order_by("position")
        )
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        rows = list(pending.values("id", "target_id", "target_repr", "payload", "in_doubt")[:limit])
        if not rows:
            return []
        # An in-doubt item kept its record claimed while it waited: it takes its claim back.
        RecordClaim.objects.filter(holder__in=[item_holder(r["id"]) for r in rows]).delete()
        ours = (
            claim_records(
                handler.target_type,
                [r["target_id"] for r in rows],
                holder=worker_id,
                until=lease_until,
                job_items={r["target_id"]: r["id"] for r in rows},
            )
            if handler.claims_records
            else {r["target_id"] for r in rows}
        )
        busy = [r["id"] for r in rows if r["target_id"] not in ours]
        rows = [r for r in rows if r["target_id"] in ours]
        held = handler.busy([WorkItem(**r) for r in rows]) if rows else set()
        if held:
            release_records(
                holder=worker_id,
                target_type=handler.target_type,
                target_ids=[r["target_id"] for r in rows if r["id"] in held],
            )
            busy += list(held)
            rows = [r for r in rows if r["id"] not in held]
        if busy:
            JobItem.objects.filter(id__in=busy).update(
                lease_until=now + CLAIM_BUSY_PAUSE,
                **message_fields(
                    text(gettext_noop("Waiting: another push of this record is in progress."))
                ),
            )
        if not rows:
            return []
        JobItem.objects.filter(id__in=[r["id"] for r in rows]).update(
            state=JobItem.State.SENDING, claimed_by=worker_id, lease_until=lease_until
        )
        items = [WorkItem(**row) for row in rows]
        stale = handler.recheck(items)
        call_ids = reserve_calls(job, handler, [i for i in items if i.id not in stale], now)
    return [
        replace(item, stale_reason=stale.get(item.id, ""), call_id=call_ids.get(item.id))
        for item in items
    ]
