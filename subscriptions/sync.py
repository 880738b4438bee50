"""Pull Paynet's state into the mirror, always from Paynet's answer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from upstream.calls.client import CallRecorder
from upstream.calls.errors import UpstreamAuthError, UpstreamError, UpstreamTransportError
from upstream.history.changes import CHUNK, history_call, history_source, insert_created, plain
from upstream.history.drift import drift_missing
from upstream.history.sync import SyncCounts, held_back

from .client import PaynetClient, from_kurus, parse_datetime
from .models import Subscription, SubscriptionInvoice

# subscription/list needs a date range (paynet.md §6.1); this one covers any subscription.
EPOCH = date(2000, 1, 1)


def _subscription_fields(row: dict[str, Any]) -> dict[str, Any]:
    # Read responses carry amounts in kuruş like the writes (paynet.md §10, assumption 10).
    return {
        "reference_no": str(row.get("reference_no") or ""),
        "name_surname": str(row.get("name_surname") or ""),
        "is_fixed_price": bool(row.get("is_fixed_price", True)),
        "amount": from_kurus(row.get("amount") or 0),
        "agent_id": str(row.get("agent_id") or ""),
        "agent_amount": from_kurus(row.get("agent_amount") or 0),
        "company_amount": from_kurus(row.get("company_amount") or 0),
        "currency": str(row.get("currency") or "TRY")[:3],
        "interval": row.get("interval"),
        "interval_count": row.get("interval_count"),
        "begin_date": parse_datetime(row.get("begin_date")),
        "end_user_email": str(row.get("end_user_email") or ""),
        "end_user_gsm": str(row.get("end_user_gsm") or ""),
        "status": row.get("status"),
        "created_date": parse_datetime(row.get("created_date")),
    }


def _invoice_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "invoice_no": str(row.get("invoice_no") or ""),
        "val_date": parse_datetime(row.get("val_date")),
        "amount": from_kurus(row.get("amount") or 0),
        "agent_amount": from_kurus(row.get("agent_amount") or 0),
        "company_amount": from_kurus(row.get("company_amount") or 0),
        "currency": str(row.get("currency") or "TRY")[:3],
        "status": int(row["status"]),
    }


def _locked(queryset: Any) -> Any:
    # Rows the sync may write are locked before held_back() looks at them, so a push cannot
    # write one between that check and this write (SQLite's IMMEDIATE transactions serialize).
    return queryset.select_for_update() if connection.features.has_select_for_update else queryset


def _upsert(
    model: type,
    lookup: dict[str, Any],
    fields: dict[str, Any],
    counts: SyncCounts,
    read_at: datetime | None,
) -> Any:
    now = timezone.now()
    found = model.objects.filter(**lookup)
    obj = (_locked(found) if read_at is not None else found).first()
    if obj is None:
        obj = model.objects.create(**lookup, **fields, synced_at=now)
        counts.created += 1
        return obj
    if read_at is not None and held_back(model, [obj.pk], read_at):
        counts.held += 1
        return obj
    changed = {k: v for k, v in fields.items() if getattr(obj, k) != v}
    if changed:
        counts.fields.append(
            {
                "record": str(obj),
                "model": model._meta.label_lower,
                "changes": [
                    {"field": k, "old": plain(getattr(obj, k)), "new": plain(v)}
                    for k, v in changed.items()
                ],
            }
        )
        for k, v in changed.items():
            setattr(obj, k, v)
        obj.synced_at = now
        obj.save(update_fields=[*changed, "synced_at"])
        counts.updated += 1
    else:
        counts.unchanged += 1
    return obj


def subscription_upsert(
    row: dict[str, Any], *, read_at: datetime | None = None
) -> tuple[Subscription, SyncCounts]:
    """`read_at`: when the read of `row` began (a sync, a refresh); a subscription a push claimed
    or wrote since is left as it is (upstream.history.sync.held_back)."""
    counts = SyncCounts()
    obj = _upsert(
        Subscription,
        {"subscription_id": str(row["subscription_id"])},
        _subscription_fields(row),
        counts,
        read_at,
    )
    return obj, counts


def invoices_reconcile(
    subscription: Subscription,
    rows: Iterable[dict[str, Any]],
    *,
    complete: bool = False,
    read_at: datetime | None = None,
) -> SyncCounts:
    """Make the subscription's mirrored records equal to what Paynet listed; report each change.

    `complete`: the rows are every record Paynet lists for the subscription, so a mirrored record
    missing from them vanished upstream. It stays in the mirror (jobs and calls name it) and is
    reported as drift, once (a record already known gone is not news again).

    `read_at`: when the read of `rows` began. A sync or refresh passes it, and the records a push
    claimed or wrote since are left alone, neither written nor reported (held_back); so are all
    of them while a push of the whole subscription (status of all, a create) holds it. A push's
    own read-back passes none: it is the push writing.
    """
    return invoices_reconcile_many([(subscription, list(rows), read_at)], complete=complete)[0]


INVOICE_FIELDS = (
    "invoice_no",
    "val_date",
    "amount",
    "agent_amount",
    "company_amount",
    "currency",
    "status",
)


def invoices_reconcile_many(
    reads: list[tuple[Subscription, list[dict[str, Any]], datetime | None]],
    *,
    complete: bool = False,
    calls: list[int | None] | None = None,
) -> list[SyncCounts]:
    """`invoices_reconcile` for many subscriptions' reads at once (a sync's flush): the same
    rules, and the reads of the mirror (its records, the read guard) done once for the batch,
    so a batch where nothing changed costs a few queries, not a few per subscription.

    The read guard takes the batch's earliest `read_at` (a push since any read of the batch
    holds its record back: never less careful than one by one). Each subscription's writes
    carry its own call (`calls[i]`) in the history.
    """
    if not reads:
        return []
    guarded = [read_at for _s, _rows, read_at in reads if read_at is not None]
    now = timezone.now()
    sub_pks = [s.pk for s, _rows, _at in reads]
    existing: dict[int, dict[str, SubscriptionInvoice]] = defaultdict(dict)
    for start in range(0, len(sub_pks), CHUNK):
        found = SubscriptionInvoice.objects.filter(
            subscription_id__in=sub_pks[start : start + CHUNK]
        )
        for inv in _locked(found) if guarded else found:
            existing[inv.subscription_id][inv.invoice_id] = inv
    held: set[int] = set()
    if guarded:
        earliest = min(guarded)
        held_subs = held_back(Subscription, sub_pks, earliest)
        for pk in held_subs:
            held |= {inv.pk for inv in existing[pk].values()}
        held |= held_back(
            SubscriptionInvoice,
            [
                inv.pk
                for pk, invs in existing.items()
                if pk not in held_subs
                for inv in invs.values()
            ],
            earliest,
        )
    plans = [
        _reconcile_plan(subscription, rows, existing[subscription.pk], held, complete, now)
        for subscription, rows, _at in reads
    ]
    known = _known_gone([pk for plan in plans for pk, _no in plan[3]]) if complete else set()
    # The batch's new records in one lean write, each with its history row and its read's call:
    # a sync's first fill creates every record, and the ORM's layers per value were most of it.
    insert_created(
        SubscriptionInvoice,
        [record for plan in plans for record in plan[1]],
        calls=[calls[i] if calls else None for i, plan in enumerate(plans) for _r in plan[1]],
    )
    for i, (counts, to_create, to_update, gone) in enumerate(plans):
        with history_call(calls[i] if calls else None):
            if to_update:
                SubscriptionInvoice.objects.bulk_update(
                    to_update, [*INVOICE_FIELDS, "synced_at"], batch_size=500
                )
            if gone:
                drift_missing(SubscriptionInvoice, gone, at=now)
        counts.created += len(to_create)
        counts.updated += len(to_update)
        new = [(pk, no) for pk, no in gone if pk not in known]
        counts.vanished += len(new)
        counts.fields += [{"record": no, "vanished": True, "changes": []} for _pk, no in new]
    return [plan[0] for plan in plans]


def _reconcile_plan(
    subscription: Subscription,
    rows: list[dict[str, Any]],
    existing: dict[str, SubscriptionInvoice],
    held: set[int],
    complete: bool,
    now: datetime,
) -> tuple[SyncCounts, list[dict[str, Any]], list[SubscriptionInvoice], list[tuple]]:
    """What one subscription's read changes: (counts, the values of the records to create,
    those to update, gone)."""
    counts = SyncCounts()
    to_create, to_update = [], []
    listed: set[str] = set()
    for row in rows:
        fields = _invoice_fields(row)
        invoice_id = str(row["invoice_id"])
        listed.add(invoice_id)
        inv = existing.get(invoice_id)
        if inv is not None and inv.pk in held:
            counts.held += 1
            continue
        if inv is None:
            to_create.append(
                {
                    "subscription_id": subscription.pk,
                    "invoice_id": invoice_id,
                    "synced_at": now,
                    **fields,
                }
            )
            continue
        changed = {k: v for k, v in fields.items() if getattr(inv, k) != v}
        if not changed:
            counts.unchanged += 1
            continue
        if "status" in changed:
            counts.changes.append(
                {"invoice_no": inv.invoice_no, "from": inv.status, "to": changed["status"]}
            )
        counts.fields.append(
            {
                "record": inv.invoice_no,
                "model": "subscriptions.subscriptioninvoice",
                "changes": [
                    {"field": k, "old": plain(getattr(inv, k)), "new": plain(v)}
                    for k, v in changed.items()
                ],
            }
        )
        for k, v in changed.items():
            setattr(inv, k, v)
        inv.synced_at = now
        to_update.append(inv)
    gone = []
    if complete:
        gone = [
            (inv.pk, inv.invoice_no)
            for key, inv in existing.items()
            if key not in listed and inv.pk not in held
        ]
    return counts, to_create, to_update, gone


def subscriptions_upsert_many(
    rows: list[dict[str, Any]], *, read_at: datetime, counts: SyncCounts
) -> list[Subscription]:
    """A listing page's subscriptions into the mirror, in bulk, with the read guard (a sync):
    `subscription_upsert` for many rows, a few queries for the page. Returns them in order."""
    now = timezone.now()
    by_id = {str(row["subscription_id"]): _subscription_fields(row) for row in rows}
    found = _locked(Subscription.objects.filter(subscription_id__in=list(by_id)))
    existing = {s.subscription_id: s for s in found}
    held = held_back(Subscription, [s.pk for s in existing.values()], read_at)
    to_create, to_update, changed_fields = [], [], set()
    for subscription_id, fields in by_id.items():
        obj = existing.get(subscription_id)
        if obj is None:
            to_create.append({"subscription_id": subscription_id, "synced_at": now, **fields})
            continue
        if obj.pk in held:
            counts.held += 1
            continue
        changed = {k: v for k, v in fields.items() if getattr(obj, k) != v}
        if not changed:
            counts.unchanged += 1
            continue
        counts.fields.append(
            {
                "record": str(obj),
                "model": "subscriptions.subscription",
                "changes": [
                    {"field": k, "old": plain(getattr(obj, k)), "new": plain(v)}
                    for k, v in changed.items()
                ],
            }
        )
        for k, v in changed.items():
            setattr(obj, k, v)
        obj.synced_at = now
        changed_fields |= set(changed)
        to_update.append(obj)
    # One lean write for the page's new subscriptions and their history rows (a first sync's
    # every one); the instances, for the items that name them, get their ids from it.
    ids = insert_created(Subscription, to_create)
    for values, pk in zip(to_create, ids, strict=True):
        subscription = Subscription(pk=pk, **values)
        subscription._state.adding, subscription._state.db = False, "default"  # as saved
        existing.setdefault(values["subscription_id"], subscription)
    if to_update:
        Subscription.objects.bulk_update(
            to_update, [*sorted(changed_fields), "synced_at"], batch_size=500
        )
    counts.created += len(to_create)
    counts.updated += len(to_update)
    return [existing[subscription_id] for subscription_id in by_id]


def _known_gone(pks: list[int]) -> set[int]:
    from django.contrib.contenttypes.models import ContentType

    from upstream.models import Drift

    return set(
        Drift.objects.filter(
            content_type=ContentType.objects.get_for_model(SubscriptionInvoice),
            object_id__in=pks,
            field="",
            state=Drift.State.OPEN,
        ).values_list("object_id", flat=True)
    )


def paynet_sync(
    *, recorder: CallRecorder | None = None, since: date | None = None, until: date | None = None
) -> SyncCounts:
    """Mirror every subscription created in [since, until] and all of its payment records."""
    client = PaynetClient(recorder=recorder)
    datab, datbi = since or EPOCH, until or timezone.localdate()
    totals = SyncCounts()
    # The list of subscriptions is read page by page while the loop runs: it began now.
    listed_at = timezone.now()
    for row in client.iter_subscriptions(datab=datab, datbi=datbi):
        read_at = timezone.now()
        records = list(client.iter_invoices(subscription_id=str(row["subscription_id"])))
        with transaction.atomic(), history_source("sync", keep_outer=True):
            subscription, counts = subscription_upsert(row, read_at=listed_at)
            totals.add(counts)
            totals.add(invoices_reconcile(subscription, records, complete=True, read_at=read_at))
    return totals


def subscription_refresh(
    subscription: Subscription, *, recorder: CallRecorder | None = None
) -> SyncCounts:
    """Re-read one subscription and its records from Paynet."""
    client = PaynetClient(recorder=recorder)
    read_at = timezone.now()
    detail = client.subscription_detail(subscription_id=subscription.subscription_id)
    records = list(client.iter_invoices(subscription_id=subscription.subscription_id))
    actor_id = getattr(recorder, "actor_id", None)
    with transaction.atomic(), history_source("refresh", actor_id=actor_id, keep_outer=True):
        _, counts = subscription_upsert(
            {**detail, "subscription_id": subscription.subscription_id}, read_at=read_at
        )
        counts.add(invoices_reconcile(subscription, records, complete=True, read_at=read_at))
    return counts


def subscriptions_refresh(
    subscriptions: Iterable[Subscription], *, recorder: CallRecorder | None = None
) -> tuple[SyncCounts, int, list[tuple[Subscription, UpstreamError]]]:
    """Refresh each subscription; return the totals, how many refreshed, and what failed.

    Stops at an unreachable Paynet or refused credentials: the rest would fail the same way.
    """
    totals, done, failures = SyncCounts(), 0, []
    for subscription in subscriptions:
        try:
            totals.add(subscription_refresh(subscription, recorder=recorder))
        except (UpstreamTransportError, UpstreamAuthError) as error:
            failures.append((subscription, error))
            break
        except UpstreamError as error:
            failures.append((subscription, error))
            continue
        done += 1
    return totals, done, failures
