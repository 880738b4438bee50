"""How long personal data is kept unmasked (KVKK; docs/decisions/at-the-door-two-personal-data.md).

The call log and the record history store customers' names, e-mails and phone numbers masked
when they are written. PERSONAL_DATA_RETENTION_DAYS bounds what may still be there in clear (rows
written before masking, or before a field joined the lists): the periodic sweep masks the call
log's and the history's rows older than that, once (a mark says how far it got). Rows are
masked in place, never deleted: timelines, counts and ₺ totals read as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from upstream.calls.remask import calls_remask
from upstream.history.remask import history_remask

from .models import RetentionMark

MARK = "personal_data"


def personal_data_retention_sweep(*, now: datetime | None = None, batch: int = 500) -> int:
    """Mask personal data in call log and history rows older than the retention; returns how
    many rows changed. 0 days keeps everything as it is."""
    days = float(getattr(settings, "PERSONAL_DATA_RETENTION_DAYS", 0) or 0)
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    mark, _ = RetentionMark.objects.get_or_create(name=MARK)
    after = mark.done_until
    if after is not None and after >= cutoff:
        return 0
    _, calls = calls_remask(batch, after=after, before=cutoff)
    history = history_remask(batch, after=after, before=cutoff)
    with transaction.atomic():
        RetentionMark.objects.filter(name=MARK).update(done_until=cutoff)
    return calls + history
