"""Mask the personal fields of record history rows kept before history was masked at rest
(upstream/history/changes.py `mask_change`): a field's old and new values, and the snapshot of
a created or deleted record. Idempotent; only rows that change are written; the rows, their
times and every other field stay, so timelines and totals read as before."""

from __future__ import annotations

from datetime import datetime

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from upstream.history.changes import mask_change
from upstream.models import RecordChange
from upstream.registry import mirrored_models


def history_remask(
    batch: int = 500, *, after: datetime | None = None, before: datetime | None = None
) -> int:
    """Mask the history of every model with personal fields (rows at [after, before) when
    given); returns how many rows changed."""
    changed = 0
    for entry in mirrored_models():
        if not entry.personal:
            continue
        label = entry.model._meta.label_lower
        rows = RecordChange.objects.filter(
            Q(field__in=list(entry.personal)) | Q(field=""),
            content_type=ContentType.objects.get_for_model(entry.model),
        )
        if after is not None:
            rows = rows.filter(at__gte=after)
        if before is not None:
            rows = rows.filter(at__lt=before)
        last = 0
        while True:
            chunk = list(
                rows.filter(pk__gt=last).order_by("pk").values("id", "field", "old", "new")[:batch]
            )
            if not chunk:
                break
            for row in chunk:
                old = mask_change(label, row["field"], row["old"])
                new = mask_change(label, row["field"], row["new"])
                if (old, new) != (row["old"], row["new"]):
                    RecordChange.objects.filter(pk=row["id"]).update(old=old, new=new)
                    changed += 1
            last = chunk[-1]["id"]
    return changed
