"""One record's timeline: the operations, calls, field changes, syncs and drift about it.

Each source is one indexed range read of the newest `limit` rows for the record (job items and
calls by target, changes by (content type, object id, at), drift by record), merged in Python,
so a record's page stays fast however long the history tables grow. Pushes aimed at another
record that changed this one are found through its changes' calls (`pushed_from_elsewhere`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.translation import gettext as _

from upstream.l10n.formats import day, money

# Event kinds (the API's `kind`).
OPERATION = "operation"
CALL = "call"
CHANGE = "change"
SYNC = "sync"
CREATED = "created"
DELETED = "deleted"
DRIFT_FOUND = "drift_found"
DRIFT_RESOLVED = "drift_resolved"

_CHANGE_KIND = {"sync": SYNC, "refresh": SYNC}


@dataclass
class Event:
    at: datetime
    kind: str
    summary: str
    actor: str | None = None
    reason: str = ""
    call: int | None = None
    job: int | None = None
    # [{field, old, new}] as stored (JSON values); `shown` holds them formatted for staff.
    changes: list[dict[str, Any]] = field(default_factory=list)
    shown: list[dict[str, str]] = field(default_factory=list)
    source: str = ""
    # Ties at the same moment: operation, then its call, then what it changed.
    order: int = 0


def _user(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def format_value(model: type[models.Model], name: str, value: Any, currency: str = "TRY") -> str:
    """A stored value as staff read it: ₺ amounts, dd.mm.yyyy dates, choice labels."""
    if value is None or value == "":
        return "—"
    try:
        f = model._meta.get_field(name)
    except Exception:
        return str(value)
    if f.choices:
        return str(dict(f.flatchoices).get(value, value))
    if isinstance(f, models.DecimalField):
        try:
            return money(Decimal(str(value)), currency)
        except InvalidOperation:
            return str(value)
    if isinstance(f, models.DateTimeField):
        parsed = parse_datetime(str(value))
        return day(parsed) if parsed else str(value)
    if isinstance(f, models.BooleanField):
        return _("Yes") if value else _("No")
    if isinstance(f, models.ForeignKey):
        target = f.related_model._base_manager.filter(pk=value).first()
        return str(target) if target is not None else f"#{value}"
    return str(value)


def field_label(model: type[models.Model], name: str) -> str:
    try:
        return str(model._meta.get_field(name).verbose_name)
    except Exception:
        return name


def pushed_from_elsewhere(
    model: type[models.Model], pk: Any, *, limit: int = 200
) -> tuple[list[int], list[int]]:
    """The calls, and their job items, that changed this record while aimed at another one.

    A push names its target (a subscription, an item), yet writes records beside it: a payment
    record it created or changed with all of its subscription's, an invoice's totals. Those
    changes name their call, which leads to the push. Two indexed reads of the newest `limit`.
    """
    from upstream.models import RecordChange, UpstreamCall

    if not str(pk).isdigit():
        return [], []
    content_type = ContentType.objects.get_for_model(model)
    changed_by = (
        RecordChange.objects.filter(content_type=content_type, object_id=pk, call__isnull=False)
        .order_by("-at", "-id")
        .values_list("call_id", flat=True)[:limit]
    )
    rows = list(
        UpstreamCall.objects.filter(pk__in=set(changed_by))
        .exclude(target_type=model._meta.label_lower, target_id=str(pk))
        .values_list("pk", "job_item_id")
    )
    calls = sorted({call for call, _item in rows})
    items = sorted({item for _call, item in rows if item is not None})
    return calls, items


def record_timeline(record: models.Model, *, limit: int = 200, masked: bool = False) -> list[Event]:
    """Everything about one record, oldest first (the admin shows it newest first).

    masked: the reader lacks security.view_personal_data, so a personal field's old and new
    values (a name, an e-mail, a phone) are shown masked, as the lists show them.
    """
    from upstream.calls.redaction import mask_value
    from upstream.models import Drift, JobItem, RecordChange, UpstreamCall
    from upstream.registry import personal_fields

    model = type(record)
    label = model._meta.label_lower
    personal = personal_fields(label) if masked else {}

    def value(field: str, raw: Any) -> Any:
        return mask_value(personal[field], raw) if field in personal else raw

    content_type = ContentType.objects.get_for_model(model)
    currency = getattr(record, "currency", "") or "TRY"
    events: list[Event] = []

    # Pushes aimed at another record that changed this one are on its timeline too (read
    # apart: an OR with the target could make the planner walk every row).
    other_calls, other_items = pushed_from_elsewhere(model, record.pk, limit=limit)
    item_rows = JobItem.objects.select_related("job", "job__created_by").defer(
        "payload", "job__selection", "job__params"
    )
    items = [
        *item_rows.filter(target_type=label, target_id=str(record.pk)).order_by("-id")[:limit],
        *(item_rows.filter(pk__in=other_items) if other_items else []),
    ]
    for item in items:
        outcome = item.get_outcome_display() if item.outcome else item.get_state_display()
        # In the reader's language: the stored title and message are the writer's.
        summary = f"{item.job.display_title}: {outcome}"
        if item.message:
            summary = f"{summary} — {item.display_message}"
        events.append(
            Event(
                at=item.job.created_at,
                kind=OPERATION,
                summary=summary,
                actor=_user(item.job.created_by),
                reason=item.job.reason,
                call=item.call_id,
                job=item.job_id,
                order=0,
            )
        )

    call_rows = UpstreamCall.objects.select_related("actor").only(
        "id",
        "operation",
        "outcome",
        "upstream_code",
        "upstream_message",
        "created_at",
        "actor",
        "job_id",
    )
    aimed = call_rows.filter(target_type=label, target_id=str(record.pk))
    calls = [
        *aimed.order_by("-created_at", "-id")[:limit],
        *(call_rows.filter(pk__in=other_calls) if other_calls else []),
    ]
    for call in calls:
        summary = f"{call.operation}: {call.get_outcome_display()}"
        if call.upstream_message:
            summary = f"{summary} — {call.upstream_message}"
        events.append(
            Event(
                at=call.created_at,
                kind=CALL,
                summary=summary,
                actor=_user(call.actor),
                call=call.pk,
                job=call.job_id,
                order=1,
            )
        )

    rows = list(
        RecordChange.objects.filter(content_type=content_type, object_id=record.pk)
        .select_related("actor")
        .order_by("-at", "-id")[:limit]
    )
    groups: dict[tuple, list[RecordChange]] = {}
    for row in reversed(rows):
        key = (row.at, row.source, row.action, row.job_id, row.call_id, row.actor_id, row.reason)
        groups.setdefault(key, []).append(row)
    for (at, source, action, job_id, call_id, _actor, reason), changes in groups.items():
        first = changes[0]
        source_label = first.get_source_display()
        if action == RecordChange.Action.CREATE:
            kind, summary, listed = (
                CREATED,
                _("Created (%(source)s)") % {"source": source_label},
                [],
            )
        elif action == RecordChange.Action.DELETE:
            kind = DELETED
            summary = _("Removed: the upstream no longer lists it (%(source)s)") % {
                "source": source_label
            }
            listed = []
        else:
            kind = _CHANGE_KIND.get(source, CHANGE)
            listed = [
                {"field": c.field, "old": value(c.field, c.old), "new": value(c.field, c.new)}
                for c in changes
            ]
            summary = "; ".join(
                f"{field_label(model, c['field'])}: "
                f"{format_value(model, c['field'], c['old'], currency)} → "
                f"{format_value(model, c['field'], c['new'], currency)}"
                for c in listed
            )
            summary = f"{source_label}: {summary}"
        events.append(
            Event(
                at=at,
                kind=kind,
                summary=summary,
                actor=_user(first.actor),
                reason=reason,
                call=call_id,
                job=job_id,
                changes=listed,
                shown=[
                    {
                        "field": field_label(model, c["field"]),
                        "old": format_value(model, c["field"], c["old"], currency),
                        "new": format_value(model, c["field"], c["new"], currency),
                    }
                    for c in listed
                ],
                source=source,
                order=2,
            )
        )

    drifts = (
        Drift.objects.filter(content_type=content_type, object_id=record.pk)
        .select_related("resolved_by")
        .order_by("-first_seen_at", "-id")[:limit]
    )
    for drift in drifts:
        what = field_label(model, drift.field) if drift.field else _("record")
        change = {
            "field": drift.field,
            "old": value(drift.field, drift.expected),
            "new": value(drift.field, drift.found),
        }
        events.append(
            Event(
                at=drift.first_seen_at,
                kind=DRIFT_FOUND,
                summary=_(
                    "Drift found (%(kind)s): %(field)s, expected %(expected)s, found %(found)s"
                )
                % {
                    "kind": drift.get_kind_display(),
                    "field": what,
                    "expected": format_value(model, drift.field, change["old"], currency),
                    "found": format_value(model, drift.field, change["new"], currency),
                },
                changes=[change] if drift.field else [],
                order=3,
            )
        )
        if drift.resolved_at is not None:
            events.append(
                Event(
                    at=drift.resolved_at,
                    kind=DRIFT_RESOLVED,
                    # One sentence per state: "Sapma %(state)s" read "Sapma Yeniden gönderildi".
                    summary=(
                        _("Drift re-pushed: %(field)s")
                        if drift.state == Drift.State.REPUSHED
                        else _("Drift accepted: %(field)s")
                    )
                    % {"field": what},
                    actor=_user(drift.resolved_by),
                    reason=drift.resolution_reason,
                    job=drift.job_id,
                    order=4,
                )
            )

    events.sort(key=lambda e: (e.at, e.order))
    return events[-limit:]


def record_admin_url(target_type: str, target_id: Any) -> str:
    """The admin page of a record named by its label ("billing.invoiceitem") and id, or ""."""
    app_label, _sep, model_name = (target_type or "").partition(".")
    if not model_name or not str(target_id or "").isdigit():
        return ""
    try:
        return reverse(f"admin:{app_label}_{model_name}_change", args=[target_id])
    except NoReverseMatch:
        return ""


def record_link(target_type: str, target_id: Any, text: str) -> str:
    url = record_admin_url(target_type, target_id)
    return format_html('<a href="{}">{}</a>', url, text) if url else text
