"""Drift: changes an upstream made to a mirrored record that we did not expect.

Found while the mirror follows the upstream (a sync, a refresh, a read-back): the mirror takes
the upstream's value at once, and a change that is not the upstream's own lifecycle becomes an
entry staff accept (with a reason) or re-push (the expected value, through the normal push path
with its rules, reason and approvals). Kinds:

- reverted: a value we pushed and the upstream confirmed, later found otherwise;
- outside_change: a field only staff change, changed upstream (Paynet: amount, val_date, the
  split, a status other than Paynet's own charge outcome 0 → 3 / 0 → 4; WiseCP: an item's amount,
  total, quantity or invoice);
- missing: a record the upstream no longer lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from upstream.history.changes import Source
    from upstream.models import Drift, Job, RecordChange

# Sources that bring the upstream's state into the mirror: only their changes can be drift.
READ_SOURCES = frozenset({"sync", "refresh", "call"})

SERVICES = {
    "subscriptions.subscription": "paynet",
    "subscriptions.subscriptioninvoice": "paynet",
    "billing.invoice": "wisecp",
    "billing.invoiceitem": "wisecp",
    "billqueries.billqueryline": "payofin",
}
# Fields only staff change (issue 9); a change seen upstream is drift.
STAFF_ONLY = {
    "subscriptions.subscriptioninvoice": frozenset(
        {"amount", "val_date", "agent_amount", "company_amount", "status"}
    ),
    "billing.invoiceitem": frozenset({"amount", "total", "quantity", "invoice"}),
}
# The upstream's own lifecycle: on the timeline, never drift (Paynet charging a record).
LIFECYCLE = {
    ("subscriptions.subscriptioninvoice", "status"): frozenset({(0, 3), (0, 4)}),
}
# Records whose vanishing upstream is drift.
VANISHING = frozenset({"subscriptions.subscriptioninvoice", "billing.invoiceitem"})


def _is_lifecycle(label: str, field: str, old: Any, new: Any) -> bool:
    return (old, new) in LIFECYCLE.get((label, field), ())


def drift_detect(
    model: type[models.Model],
    changes: list[RecordChange],
    labels: Mapping[int, Any],
    source: Source,
) -> list[Drift]:
    """Turn the changes an upstream read just wrote into drift entries (see the module doc)."""
    if source.kind not in READ_SOURCES or not changes:
        return []
    from upstream.models import Drift, RecordChange

    label = model._meta.label_lower
    staff_only = STAFF_ONLY.get(label, frozenset())
    updates = [c for c in changes if c.action == RecordChange.Action.UPDATE]
    # Per (record, field) the latest earlier change: was it a push of ours?
    previous: dict[tuple[int, str], RecordChange] = {}
    if updates:
        earlier = (
            RecordChange.objects.filter(
                content_type=changes[0].content_type_id,
                object_id__in={c.object_id for c in updates},
                field__in={c.field for c in updates},
                action=RecordChange.Action.UPDATE,
            )
            .exclude(pk__in=[c.pk for c in changes if c.pk])
            .order_by("object_id", "field", "-at", "-id")
            .only("object_id", "field", "source", "new")
        )
        for row in earlier:
            previous.setdefault((row.object_id, row.field), row)
    found: list[tuple[RecordChange, str, Any, Any]] = []
    for change in changes:
        if change.action == RecordChange.Action.DELETE and label in VANISHING:
            found.append((change, Drift.Kind.MISSING, labels.get(change.object_id), None))
            continue
        if change.action != RecordChange.Action.UPDATE:
            continue
        if _is_lifecycle(label, change.field, change.old, change.new):
            continue
        last = previous.get((change.object_id, change.field))
        if last is not None and last.source == "operation" and last.new == change.old:
            found.append((change, Drift.Kind.REVERTED, change.old, change.new))
        elif change.field in staff_only:
            found.append((change, Drift.Kind.OUTSIDE_CHANGE, change.old, change.new))
    return [
        _open(
            model,
            change.object_id,
            labels.get(change.object_id),
            change.field,
            expected,
            new,
            kind,
            change.at,
        )
        for change, kind, expected, new in found
    ]


def drift_missing(
    model: type[models.Model], records: Iterable[tuple[int, Any]], *, at: Any = None
) -> list[Drift]:
    """Records a complete upstream read no longer lists, kept in the mirror (Paynet)."""
    at = at or timezone.now()
    return [
        _open(model, pk, record_label, "", str(record_label), None, "missing", at)
        for pk, record_label in records
    ]


def _open(
    model: type[models.Model],
    pk: int,
    record_label: Any,
    field: str,
    expected: Any,
    found: Any,
    kind: str,
    at: Any,
) -> Drift:
    """One open entry per record and field: seen again, it keeps what we expected first."""
    from upstream.models import Drift

    content_type = ContentType.objects.get_for_model(model)
    entry = Drift.objects.filter(
        content_type=content_type, object_id=pk, field=field, state=Drift.State.OPEN
    ).first()
    if entry is not None:
        entry.found = found
        entry.last_seen_at = at
        entry.save(update_fields=["found", "last_seen_at"])
        return entry
    return Drift.objects.create(
        service=SERVICES.get(model._meta.label_lower, ""),
        content_type=content_type,
        object_id=pk,
        record_label=str(record_label if record_label is not None else pk)[:200],
        field=field,
        expected=expected,
        found=found,
        kind=kind,
        first_seen_at=at,
        last_seen_at=at,
    )


def drift_list(*, service: str = "", kind: str = "", state: str = "") -> models.QuerySet[Drift]:
    from upstream.models import Drift

    queryset = Drift.objects.select_related("content_type", "resolved_by")
    if service:
        queryset = queryset.filter(service=service)
    if kind:
        queryset = queryset.filter(kind=kind)
    if state:
        queryset = queryset.filter(state=state)
    return queryset


def open_drift_ids(model: type[models.Model], pks: Iterable[int]) -> set[int]:
    """The records among `pks` with open drift (the push preview marks them)."""
    from upstream.models import Drift

    return set(
        Drift.objects.filter(
            content_type=ContentType.objects.get_for_model(model),
            object_id__in=list(pks),
            state=Drift.State.OPEN,
        ).values_list("object_id", flat=True)
    )


def open_drift_count(model: type[models.Model], records: models.QuerySet) -> int:
    """How many of the selected records have open drift (one query, however big the selection)."""
    from upstream.models import Drift

    return (
        Drift.objects.filter(
            content_type=ContentType.objects.get_for_model(model),
            state=Drift.State.OPEN,
            object_id__in=records.order_by().values("pk"),
        )
        .values("object_id")
        .distinct()
        .count()
    )


def drift_counts() -> dict[str, dict[str, int]]:
    """Open drift per upstream and kind (the dashboard)."""
    from upstream.models import Drift

    counts: dict[str, dict[str, int]] = {}
    rows = (
        Drift.objects.filter(state=Drift.State.OPEN)
        .values("service", "kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts.setdefault(row["service"], {})[row["kind"]] = row["n"]
    return counts


def _require(actor: Any, reason: str) -> str:
    if actor is None or not actor.has_perm("upstream.resolve_drift"):
        raise PermissionDenied(_("You do not have permission to resolve drift."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("A reason is required.")]})
    return reason


def drift_accept(*, drift: Drift, actor: Any, reason: str) -> Drift:
    """Acknowledge a drift entry: the mirror keeps what the upstream holds."""
    from upstream.models import Drift

    reason = _require(actor, reason)
    with transaction.atomic():
        updated = Drift.objects.filter(pk=drift.pk, state=Drift.State.OPEN).update(
            state=Drift.State.ACCEPTED,
            resolved_by=actor,
            resolved_at=timezone.now(),
            resolution_reason=reason,
        )
    if not updated:
        raise ValidationError({"state": [_("This drift entry is no longer open.")]})
    drift.refresh_from_db()
    return drift


class RepushResult:
    def __init__(self, drift: Drift, job: Job | None, accepted: bool) -> None:
        self.drift = drift
        self.job = job
        # True when the push waits (approval) or is being settled: the API's 202.
        self.accepted = accepted


def drift_repush(*, drift: Drift, actor: Any, reason: str) -> RepushResult:
    """Send `expected` back through the normal push path (its rules, reason and approvals).

    Only what staff can push is re-pushable: a payment record's status and an invoice item's
    fields. Raises ValidationError otherwise, and lets the push's own errors rise.
    """
    from upstream.calls.errors import PushAccepted
    from upstream.models import Drift, Job

    reason = _require(actor, reason)
    if drift.state != Drift.State.OPEN:
        raise ValidationError({"state": [_("This drift entry is no longer open.")]})
    label = drift.content_type.app_label + "." + drift.content_type.model
    model = drift.content_type.model_class()
    record = model.objects.filter(pk=drift.object_id).first() if model else None
    if record is None or drift.kind == Drift.Kind.MISSING:
        raise ValidationError({"field": [_("A vanished record cannot be re-pushed.")]})
    job = None
    accepted = False
    try:
        if label == "subscriptions.subscriptioninvoice" and drift.field == "status":
            from subscriptions.services import subscription_invoice_set_status

            subscription_invoice_set_status(
                record=record, status=int(drift.expected), actor=actor, reason=reason
            )
        elif label == "billing.invoiceitem" and drift.field in _ITEM_PUSHABLE:
            from billing.services import invoice_item_update

            invoice_item_update(
                item=record,
                changes={drift.field: _item_value(drift.field, drift.expected)},
                expected_version=record.version,
                actor=actor,
                reason=reason,
            )
        else:
            raise ValidationError(
                {"field": [_("This field cannot be pushed to the upstream; accept it instead.")]}
            )
    except PushAccepted as pending:
        job, accepted = pending.job, True
    if job is None:
        job = (
            Job.objects.filter(created_by=actor, items__target_id=str(record.pk))
            .order_by("-id")
            .first()
        )
    Drift.objects.filter(pk=drift.pk).update(
        state=Drift.State.REPUSHED,
        resolved_by=actor,
        resolved_at=timezone.now(),
        resolution_reason=reason,
        job=job,
    )
    drift.refresh_from_db()
    return RepushResult(drift, job, accepted)


_ITEM_PUSHABLE = frozenset(
    {"sequence", "description", "quantity", "tax_exempt", "amount", "total", "order_id", "invoice"}
)


def _item_value(field: str, value: Any) -> Any:
    if field in ("amount", "total"):
        return Decimal(str(value))
    if field == "invoice":
        from billing.models import Invoice

        return Invoice.objects.get(pk=value)
    return value


def drift_resolve_many(
    *, drifts: Iterable[Drift], actor: Any, reason: str, repush: bool
) -> tuple[int, list[Job], list[str]]:
    """Accept or re-push many entries (the admin's bulk actions).

    Payment records' statuses are re-pushed as one job per expected status (a bulk push with
    its frozen selection, re-checks and approvals); any other entry is pushed on its own.
    Returns how many were resolved, the jobs started and the refusals, one line each.
    """
    from upstream.calls.errors import PushConflict, UpstreamError
    from upstream.models import Drift

    reason = _require(actor, reason)
    done, jobs, errors = 0, [], []
    statuses: dict[int, list[Drift]] = {}
    for drift in drifts:
        if drift.state != Drift.State.OPEN:
            continue
        label = f"{drift.content_type.app_label}.{drift.content_type.model}"
        if repush and label == "subscriptions.subscriptioninvoice" and drift.field == "status":
            statuses.setdefault(int(drift.expected), []).append(drift)
            continue
        try:
            if repush:
                drift_repush(drift=drift, actor=actor, reason=reason)
            else:
                drift_accept(drift=drift, actor=actor, reason=reason)
            done += 1
        except (ValidationError, PermissionDenied, PushConflict, UpstreamError) as error:
            # One refusal per entry, shown to staff; the others go on (each is its own push).
            errors.append(f"{drift.record_label}: {_error_text(error)}")
    if statuses:
        from subscriptions.models import SubscriptionInvoice
        from subscriptions.services import subscription_invoice_set_status_bulk

        for status, group in statuses.items():
            try:
                job = subscription_invoice_set_status_bulk(
                    records=SubscriptionInvoice.objects.filter(pk__in=[d.object_id for d in group]),
                    status=status,
                    actor=actor,
                    reason=reason,
                )
            except (ValidationError, PermissionDenied) as error:
                errors.append(_error_text(error))
                continue
            jobs.append(job)
            done += Drift.objects.filter(
                pk__in=[d.pk for d in group], state=Drift.State.OPEN
            ).update(
                state=Drift.State.REPUSHED,
                resolved_by=actor,
                resolved_at=timezone.now(),
                resolution_reason=reason,
                job=job,
            )
    return done, jobs, errors


def _error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)
