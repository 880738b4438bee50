"""Personal data Paynet's pushes wrote in clear before masking (`manage.py mask_personal_data`)."""

from __future__ import annotations

from django.db.models import Value
from django.db.models.functions import Replace

from security.personal import masked_str
from upstream.models import Job, JobItem, UpstreamCall

from .models import Subscription


def remask_job_targets(batch: int) -> int:
    """Rows whose target text is a subscription's unmasked `str` (its job items and their
    calls); other texts about a subscription (a created record's number) stay."""
    label, renamed = Subscription._meta.label_lower, 0
    for sub in Subscription.objects.order_by("pk").iterator(chunk_size=batch):
        plain, masked = str(sub), masked_str(sub)
        if plain == masked:
            continue
        for model in (JobItem, UpstreamCall):
            renamed += model.objects.filter(
                target_type=label, target_id=str(sub.pk), target_repr=plain
            ).update(target_repr=masked)
        # A created payment record's job is titled after its subscription.
        Job.objects.filter(
            items__target_type=label, items__target_id=str(sub.pk), title__contains=plain
        ).update(title=Replace("title", Value(plain), Value(masked)))
    return renamed
