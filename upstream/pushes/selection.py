"""A bulk job's frozen selection: launched in a constant number of statements, expanded later.

"Select all" over 50,000 records must not load them into the web process nor write 50,000 job
items in the request. The launch stores the selection in one compact column of the job
(`"17:0,18:4,…"`: each record's id and the value the preview judged it by, built by the
database in one aggregate query). The worker expands it into items in chunks before sending;
records created after the launch are not in it, and a record whose value moved on is skipped by
the handler's re-check exactly as it would be for an item written at once.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import reset_queries, transaction
from django.db.models import Aggregate, CharField, Count, F, QuerySet, Sum, TextField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.actors import User, actor_allowed
from upstream.calls.breaker import breaker_require
from upstream.l10n.stored import to_json
from upstream.models import Job, JobItem
from upstream.pushes.approvals import approval_fields
from upstream.pushes.jobs import job_enqueue
from upstream.pushes.kinds import kind_for

EXPAND_CHUNK = 2000


class _JoinIds(Aggregate):
    """STRING_AGG on PostgreSQL, GROUP_CONCAT on SQLite: one text of all entries."""

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s, ',')"
    output_field = TextField()

    def as_sqlite(self, compiler, conn, **extra_context):
        return self.as_sql(
            compiler, conn, function="GROUP_CONCAT", template="%(function)s(%(expressions)s)"
        )


def freeze(
    queryset: QuerySet, tag: str | None = None, amount: str | None = None
) -> tuple[int, str, Decimal | None]:
    """(how many, "id[:tag],…", the sum of `amount`) of the queryset, in one query."""
    entry: Any = Cast("pk", CharField())
    if tag:
        entry = Concat(entry, Value(":"), Cast(F(tag), CharField()), output_field=CharField())
    totals: dict[str, Any] = {"n": Count("pk"), "ids": _JoinIds(entry)}
    if amount:
        totals["amount"] = Sum(amount)
    row = queryset.order_by().aggregate(**totals)
    total = (row.get("amount") or Decimal("0")) if amount else None
    return row["n"] or 0, row["ids"] or "", total


def parse(selection: str) -> list[tuple[int, str]]:
    """The selection's (id, tag) entries in id order (the expansion's item order)."""
    entries = []
    for part in filter(None, selection.split(",")):
        pk, _sep, tag = part.partition(":")
        entries.append((int(pk), tag))
    entries.sort()
    return entries


def job_create_frozen(
    *,
    kind: str,
    queryset: QuerySet,
    title: Callable[[int], str],
    actor: User | None,
    params: dict[str, Any] | None = None,
    reason: str = "",
    tag: str | None = None,
    amount: str | None = None,
    extra_amount: Decimal | None = None,
    approval_count: int | None = None,
) -> Job:
    """Create a job over the queryset's records as they are now, and queue it.

    The same statements whatever the selection's size: one aggregate, one insert, the enqueue.
    `tag` names the field whose current value each item will be re-checked against; `amount`
    the field whose sum is the job's ₺ total (or `extra_amount` gives it). A job over an
    approval threshold (by its count, or `approval_count` records it changes, or its ₺) waits
    for a second person instead of being queued. Refused (UpstreamUnavailable) while the
    upstream's circuit breaker is open.
    """
    handler = kind_for(kind)
    if not actor_allowed(actor, handler.permission):
        raise PermissionDenied(_("You do not have permission to run this change."))
    breaker_require(handler.service)
    with transaction.atomic():
        count, ids, total = freeze(queryset, tag, amount)
        if not count:
            raise ValidationError(_("Nothing to send: no record would change."))
        if extra_amount is not None:
            total = (total or Decimal("0")) + extra_amount
        job = Job.objects.create(
            kind=kind,
            title=title(count)[:200],
            title_text=to_json(title(count)),
            params=params or {},
            reason=reason,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            total=count,
            selection=ids,
            prepared=0,
            amount=total,
            # A read (a refresh) sends nothing upstream: no second person needed.
            **(
                approval_fields(max(count, approval_count or 0), total, actor)
                if handler.operation
                else {}
            ),
        )
        if job.state == Job.State.QUEUED:
            job_enqueue(job)
    return job


def prepare_job(job_id: int, *, chunk: int | None = None) -> int:
    """Expand the job's frozen selection into items, a chunk per transaction; return how many
    this call wrote. Safe to run again after a crash or beside another worker: each chunk moves
    `prepared` forward only from the value it read, so no chunk is written twice."""
    chunk = chunk or EXPAND_CHUNK  # read now, so a test or a setting may change it
    job = Job.objects.only("pk", "kind", "params", "selection", "prepared").get(pk=job_id)
    if job.prepared is None:
        return 0
    handler = kind_for(job.kind)
    model = apps.get_model(handler.target_type)
    entries = parse(job.selection)
    written = 0
    while True:
        prepared, cancel = _progress(job_id)
        if prepared >= len(entries):
            return written
        part = entries[prepared : prepared + chunk]
        with transaction.atomic():
            moved = Job.objects.filter(pk=job_id, prepared=prepared).update(
                prepared=prepared + len(part), heartbeat_at=timezone.now()
            )
            if not moved:
                continue  # another worker took this chunk; read where it got to
            records = handler.expand_queryset(model.objects.all()).in_bulk([pk for pk, _ in part])
            built = handler.expand(list(records.values()), dict(part), job.params)
            JobItem.objects.bulk_create(
                [
                    _item(job_id, handler.target_type, position, pk, built.get(pk), cancel)
                    for position, (pk, _tag) in enumerate(part, start=prepared + 1)
                ],
                batch_size=1000,
            )
            written += len(part)
        if settings.DEBUG:
            reset_queries()  # a worker with DEBUG on must not keep every chunk's SQL


def _progress(job_id: int) -> tuple[int, bool]:
    return Job.objects.values_list("prepared", "cancel_requested").get(pk=job_id)


def _item(job_id: int, target_type: str, position: int, pk: int, new: Any, cancel: bool) -> JobItem:
    item = JobItem(job_id=job_id, position=position, target_type=target_type, target_id=str(pk))
    if new is None:
        # Deleted from the mirror since the launch: nothing to send it from.
        item.target_repr = f"#{pk}"
        item.state, item.outcome = JobItem.State.DONE, JobItem.Outcome.SKIPPED
        item.message = _("The record is no longer in the mirror.")
        item.finished_at = timezone.now()
    else:
        item.target_repr = (new.target_repr or str(new.target))[:200]
        item.payload = new.payload
        if cancel:
            item.state, item.outcome = JobItem.State.DONE, JobItem.Outcome.CANCELLED
            item.message = _("Cancelled before it was sent.")
            item.finished_at = timezone.now()
    return item
