"""Pull Payofin's institution catalogue into the mirror, always from Payofin's answer."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from django.db import transaction
from django.utils import timezone

from upstream.calls.client import CallRecorder
from upstream.history.sync import SyncCounts

from .client import InstitutionInfo, PayofinClient
from .models import Institution

SYNCED_FIELDS = [
    "name",
    "invoice_type",
    "description",
    "field_title",
    "field_description",
    "mask",
    "subscriber_required",
    "additional_no_required",
    "partial_amount",
    "active",
    "synced_at",
]


def _fields(info: InstitutionInfo) -> dict[str, Any]:
    data = asdict(info)
    data.pop("soot_code")
    data["active"] = True
    return data


def institutions_reconcile(infos: list[InstitutionInfo]) -> SyncCounts:
    """Make the mirror equal to the list: create, update, and mark the unlisted ones inactive.

    Institutions are never deleted: earlier bill-query lines point at them."""
    counts = SyncCounts()
    now = timezone.now()
    existing = {inst.soot_code: inst for inst in Institution.objects.all()}
    listed = set()
    to_create, to_update = [], []
    for info in infos:
        if info.soot_code in listed:
            continue  # a code listed twice: the first one wins
        listed.add(info.soot_code)
        fields = _fields(info)
        inst = existing.get(info.soot_code)
        if inst is None:
            to_create.append(Institution(soot_code=info.soot_code, synced_at=now, **fields))
            continue
        changed = {k: v for k, v in fields.items() if getattr(inst, k) != v}
        if not changed:
            counts.unchanged += 1
            continue
        counts.changes.append({"soot_code": inst.soot_code, "fields": sorted(changed)})
        for k, v in changed.items():
            setattr(inst, k, v)
        inst.synced_at = now
        to_update.append(inst)
    for code, inst in existing.items():
        # An empty list is more likely Payofin's hiccup than every institution gone.
        if listed and code not in listed and inst.active:
            inst.active = False
            inst.synced_at = now
            to_update.append(inst)
            counts.changes.append({"soot_code": code, "fields": ["active"]})
    Institution.objects.bulk_create(to_create, batch_size=500)
    if to_update:
        Institution.objects.bulk_update(to_update, SYNCED_FIELDS, batch_size=500)
    counts.created = len(to_create)
    counts.updated = len(to_update)
    return counts


def payofin_sync(*, recorder: CallRecorder | None = None, since: date | None = None) -> SyncCounts:
    """Mirror `sootlist`. The catalogue has no dates, so `since` changes nothing."""
    infos = PayofinClient(recorder=recorder).sootlist()
    with transaction.atomic():
        return institutions_reconcile(infos)
