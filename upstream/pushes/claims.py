"""One push at a time per upstream record: claims that hold across processes and machines.

A claim is a row in RecordClaim, unique per record. Taking it is an INSERT that either wins or
conflicts, so two processes cannot both hold a record, on SQLite or PostgreSQL, without any lock
held across the HTTP request. A claim whose holder died runs out at `until` and is replaced,
except one whose write may have reached the upstream: a claim of an item still sending or in
doubt holds, whatever its `until`, until a read-back settles the item (`claims_holding`).
Otherwise a push could race a write the upstream may have applied, and a read-back would then
judge the first push by the second's answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import CharField, Model, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from upstream.models import JobItem, RecordClaim


def claims_holding(now: datetime | None = None) -> Q:
    """Claims that hold now: within their `until`, or of an item whose write may have gone out
    and is not settled yet (sending, or in doubt), which no lease expiry frees."""
    return (
        Q(until__gte=now or timezone.now())
        | Q(job_item__state=JobItem.State.SENDING)
        | Q(job_item__in_doubt=True)
    )


def claim_records(
    target_type: str,
    target_ids: Iterable[str],
    *,
    holder: str,
    until: datetime,
    job_items: dict[str, int] | None = None,
) -> set[str]:
    """Claim the records that are free (or whose claim ran out); return the ids now ours.

    Call it inside the transaction that records what will be sent, so the claim and that
    record commit together.
    """
    ids = [str(i) for i in dict.fromkeys(target_ids)]
    if not ids:
        return set()
    job_items = job_items or {}
    now = timezone.now()
    with transaction.atomic():
        # Only claims that ran out are replaced; a live one keeps its row and the insert below
        # conflicts on the unique constraint instead.
        RecordClaim.objects.filter(target_type=target_type, target_id__in=ids).exclude(
            claims_holding(now)
        ).delete()
        RecordClaim.objects.bulk_create(
            [
                RecordClaim(
                    target_type=target_type,
                    target_id=target_id,
                    holder=holder,
                    job_item_id=job_items.get(target_id),
                    until=until,
                )
                for target_id in ids
            ],
            ignore_conflicts=True,
        )
        ours = set(
            RecordClaim.objects.filter(
                target_type=target_type, target_id__in=ids, holder=holder
            ).values_list("target_id", flat=True)
        )
    return ours


def release_records(
    *, holder: str, target_type: str | None = None, target_ids: Iterable[str] | None = None
) -> int:
    claims = RecordClaim.objects.filter(holder=holder)
    if target_type is not None:
        claims = claims.filter(target_type=target_type)
    if target_ids is not None:
        claims = claims.filter(target_id__in=[str(i) for i in target_ids])
    deleted, _ = claims.delete()
    return deleted


def renew_claims(*, holder: str, until: datetime) -> int:
    return RecordClaim.objects.filter(holder=holder).update(until=until)


def live_claims(model: type[Model]) -> QuerySet[RecordClaim]:
    """Live claims on rows of `model`, correlated to the outer query's pk (for Exists())."""
    return RecordClaim.objects.filter(
        claims_holding(),
        target_type=model._meta.label_lower,
        target_id=Cast(OuterRef("pk"), output_field=CharField()),
    )


def live_claim_ids(model: type[Model], pks: Iterable[Any]) -> set[Any]:
    """Which of these rows of `model` another push holds right now (pks as given)."""
    by_text = {str(pk): pk for pk in pks}
    if not by_text:
        return set()
    taken = RecordClaim.objects.filter(
        claims_holding(),
        target_type=model._meta.label_lower,
        target_id__in=list(by_text),
    ).values_list("target_id", flat=True)
    return {by_text[t] for t in taken}


def claim_holder(target_type: str, target_id: str) -> RecordClaim | None:
    """The live claim on a record, if any (for a clear "in progress" message)."""
    return (
        RecordClaim.objects.filter(
            claims_holding(), target_type=target_type, target_id=str(target_id)
        )
        .select_related("job_item")
        .first()
    )
