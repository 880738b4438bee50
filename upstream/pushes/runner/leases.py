"""Leases: who holds an item or a record, and until when.

A worker holds the items it claimed (claimed_by, lease_until) and their records for one lease,
renewed while it works. An item whose lease ran out while it was sending may have reached the
upstream, so it is never simply sent again: it goes back to pending *in doubt*, to be read back
first. An item in doubt between its attempts keeps its record claimed under its own holder
(`item_holder`, for a lease) until it is claimed again to be read back.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import gettext_noop

from upstream.calls.slots import renew_slots
from upstream.l10n.stored import message_fields, text
from upstream.models import Job, JobItem, RecordClaim
from upstream.pushes.claims import renew_claims

# A single push's lease, renewed by its web process while the request runs: short, so a killed
# web process's push is settled by the next sweep rather than minutes later.
WEB_LEASE = timedelta(seconds=20)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_length() -> timedelta:
    return timedelta(seconds=settings.JOBS_LEASE_SECONDS)


def renew_leases(job_id: int, worker_id: str, *, length: timedelta | None = None) -> None:
    """A worker still at work keeps what it holds for another lease: the items it is sending,
    their records, its slots of the upstream's cap, and the job's heartbeat (which tells the
    sweep it is alive)."""
    renewed_until = timezone.now() + (length or lease_length())
    JobItem.objects.filter(claimed_by=worker_id, state=JobItem.State.SENDING).update(
        lease_until=renewed_until
    )
    renew_claims(holder=worker_id, until=renewed_until)
    renew_slots(worker_id, renewed_until)  # its share of the upstream's cap (calls.slots)
    Job.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())


def item_holder(item_id: int) -> str:
    """Who holds a record claim kept for an item between its attempts (in doubt)."""
    return f"item:{item_id}"  # release_expired_leases builds the same in SQL


def release_expired_leases(job_id: int | None = None) -> int:
    """Items whose worker vanished mid-push may have reached the upstream: mark them in doubt.

    Each keeps its record: the claim passes to the item itself (`item_holder`) and holds until a
    read-back settles it, so no other push races a write the upstream may have applied. The
    settling read-back takes it back when it claims the item.
    """
    expired = JobItem.objects.filter(state=JobItem.State.SENDING, lease_until__lt=timezone.now())
    if job_id is not None:
        expired = expired.filter(job_id=job_id)
    with transaction.atomic():
        ids = list(expired.values_list("id", flat=True))
        if not ids:
            return 0
        RecordClaim.objects.filter(job_item_id__in=ids).update(
            holder=Concat(Value("item:"), Cast("job_item_id", CharField())),
            until=timezone.now() + lease_length(),
        )
        return JobItem.objects.filter(id__in=ids, state=JobItem.State.SENDING).update(
            state=JobItem.State.PENDING,
            in_doubt=True,
            claimed_by="",
            lease_until=None,
            **message_fields(
                text(
                    gettext_noop(
                        "The worker stopped while sending; it will be read back before any resend."
                    )
                )
            ),
        )
