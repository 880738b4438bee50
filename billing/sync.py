"""Pull WiseCP's state into the mirror, always from WiseCP's answer.

Every writer takes the moment the upstream was read (`read_at`) and stores it as `synced_at`; a
row is only overwritten by a read at least as recent. A sync or refresh also leaves alone what a
push claimed or wrote after its read began (upstream.history.sync.held_back, the rule every
upstream's sync applies), so a slow sync cannot undo a push, nor delete an item a push moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from upstream.calls.client import CallRecorder
from upstream.history.changes import history_call, history_source, insert_created, plain
from upstream.history.sync import SyncCounts, held_back

from .client import ISTANBUL, WiseCPClient
from .models import Invoice, InvoiceItem

INVOICE_FIELDS = (
    "number",
    "status",
    "currency",
    "subtotal",
    "tax",
    "total",
    "tax_rate",
    "taxfree",
    "taxation_type",
    "created_at_upstream",
    "due_date",
    "payment_date",
    "refund_date",
    "user_id",
    "full_name",
    "company_name",
)
ITEM_FIELDS = (
    "sequence",
    "description",
    "quantity",
    "tax_exempt",
    "amount",
    "total",
    "order_id",
    "due_date",
    "attributes",
)


def _fresher(row_synced_at: datetime | None, read_at: datetime) -> bool:
    return row_synced_at is None or row_synced_at <= read_at


def _locked(queryset: Any) -> Any:
    # Locked before held_back() looks at them, so a push cannot write one between that check
    # and the write (SQLite's IMMEDIATE transactions serialize on their own).
    return queryset.select_for_update() if connection.features.has_select_for_update else queryset


def invoice_write(
    data: dict[str, Any],
    *,
    read_at: datetime,
    counts: SyncCounts | None = None,
    guard: bool = False,
) -> Invoice:
    """Create or update one invoice's own fields (not its items) from a parsed upstream invoice.

    `guard`: a sync's or refresh's read, which leaves an invoice a push wrote since `read_at`
    (its totals) to that push (held_back). A push's own read-back writes without it.
    """
    counts = counts if counts is not None else SyncCounts()
    fields = {name: data[name] for name in INVOICE_FIELDS}
    found = Invoice.objects.filter(wisecp_id=data["wisecp_id"])
    invoice = (_locked(found) if guard else found).first()
    if invoice is None:
        counts.created += 1
        return Invoice.objects.create(wisecp_id=data["wisecp_id"], synced_at=read_at, **fields)
    changed = {k: v for k, v in fields.items() if getattr(invoice, k) != v}
    if not changed or not _fresher(invoice.synced_at, read_at):
        counts.unchanged += 1
        return invoice
    if guard and held_back(Invoice, [invoice.pk], read_at):
        counts.held += 1
        return invoice
    written = Invoice.objects.filter(
        Q(synced_at__isnull=True) | Q(synced_at__lte=read_at), pk=invoice.pk
    ).update(**changed, synced_at=read_at)
    if written:
        counts.fields.append(
            {
                "record": str(invoice),
                "model": "billing.invoice",
                "changes": [
                    {"field": k, "old": plain(getattr(invoice, k)), "new": plain(v)}
                    for k, v in changed.items()
                ],
            }
        )
        for k, v in changed.items():
            setattr(invoice, k, v)
        invoice.synced_at = read_at
        counts.updated += 1
    else:
        counts.unchanged += 1
    return invoice


def invoices_write(reads: Iterable[tuple[dict[str, Any], datetime]]) -> None:
    """Write several reads of invoices; per invoice only the most recent read counts."""
    latest: dict[int, tuple[dict[str, Any], datetime]] = {}
    for data, read_at in reads:
        known = latest.get(data["wisecp_id"])
        if known is None or known[1] <= read_at:
            latest[data["wisecp_id"]] = (data, read_at)
    for data, read_at in latest.values():
        invoice_write(data, read_at=read_at)


def item_values(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in ITEM_FIELDS}


def items_write(
    reads: Iterable[tuple[dict[str, Any], datetime]],
) -> dict[int, InvoiceItem]:
    """Write items from parsed upstream items after a push: the rows change, version + 1.

    Runs inside the caller's transaction. Rows are locked while they are read so the version
    bump and the freshness check cannot interleave with another writer.
    """
    reads = list(reads)
    owners = {data["owner_id"] for data, _ in reads}
    invoices = Invoice.objects.in_bulk(owners, field_name="wisecp_id")
    rows = InvoiceItem.objects.filter(wisecp_id__in=[data["wisecp_id"] for data, _ in reads])
    if connection.features.has_select_for_update:
        rows = rows.select_for_update()
    by_id = {row.wisecp_id: row for row in rows}
    changed: list[InvoiceItem] = []
    for data, read_at in reads:
        row = by_id.get(data["wisecp_id"])
        if row is None:
            continue
        if _fresher(row.synced_at, read_at):
            for name, value in item_values(data).items():
                setattr(row, name, value)
            owner = invoices.get(data["owner_id"])
            if owner is not None:
                row.invoice = owner
            row.synced_at = read_at
        row.version = F("version") + 1
        changed.append(row)
    if changed:
        InvoiceItem.objects.bulk_update(
            changed,
            [
                *ITEM_FIELDS,
                "invoice",
                "version",
                "synced_at",
            ],
            batch_size=500,
        )
        versions = dict(
            InvoiceItem.objects.filter(pk__in=[r.pk for r in changed]).values_list("pk", "version")
        )
        for row in changed:
            row.version = versions[row.pk]
    return by_id


def invoice_items_reconcile(
    invoice: Invoice,
    items: list[dict[str, Any]],
    *,
    read_at: datetime,
    counts: SyncCounts,
) -> set[int]:
    """Mirror the items an invoice read listed; return their WiseCP ids.

    A changed item gets a new version (open forms on it become stale). Items in the middle of a
    push, or written by one since the read began, are left to the push (held_back), which writes
    them from its own answer.
    """
    existing = {
        i.wisecp_id: i for i in _locked(InvoiceItem.objects.filter(wisecp_id__in=_ids(items)))
    }
    held = held_back(InvoiceItem, [i.pk for i in existing.values()], read_at)
    to_create = []
    for data in items:
        values = item_values(data)
        row = existing.get(data["wisecp_id"])
        if row is None:
            to_create.append(
                InvoiceItem(
                    wisecp_id=data["wisecp_id"], invoice=invoice, synced_at=read_at, **values
                )
            )
            continue
        changed = {k: v for k, v in values.items() if getattr(row, k) != v}
        if row.invoice_id != invoice.pk:
            changed["invoice"] = invoice
        if not changed:
            counts.unchanged += 1
            continue
        if row.pk in held:
            counts.held += 1
            continue
        written = (
            InvoiceItem.objects.filter(pk=row.pk, version=row.version)
            .filter(Q(synced_at__isnull=True) | Q(synced_at__lte=read_at))
            .update(**changed, synced_at=read_at, version=F("version") + 1)
        )
        if written:
            counts.updated += 1
            counts.fields.append(
                {
                    "record": str(row.wisecp_id),
                    "model": "billing.invoiceitem",
                    "changes": [
                        {
                            "field": k,
                            "old": plain(getattr(row, k).pk if k == "invoice" else getattr(row, k)),
                            "new": plain(v.pk if k == "invoice" else v),
                        }
                        for k, v in changed.items()
                    ],
                }
            )
        else:
            counts.unchanged += 1
    InvoiceItem.objects.bulk_create(to_create, batch_size=500)
    counts.created += len(to_create)
    return {data["wisecp_id"] for data in items}


def _ids(items: list[dict[str, Any]]) -> list[int]:
    return [data["wisecp_id"] for data in items]


def delete_vanished(
    invoice_pks: set[int],
    seen: set[int],
    counts: SyncCounts,
    read_at: datetime | None = None,
) -> None:
    """Items of the invoices just read that no read listed: deleted or moved upstream.

    A moved item comes back when the invoice it moved to is read. `read_at`: when the first of
    those reads began (a sync, a refresh); an item a push claimed or wrote since is kept for the
    next read (held_back): a push may have moved it to an invoice read before it arrived there.
    """
    if not invoice_pks:
        return
    vanished = InvoiceItem.objects.filter(invoice_id__in=invoice_pks).exclude(wisecp_id__in=seen)
    if read_at is not None:
        candidates = list(_locked(vanished).values_list("pk", flat=True))
        held = held_back(InvoiceItem, candidates, read_at)
        if held:
            counts.held += len(held)
            vanished = vanished.exclude(pk__in=held)
    counts.fields += [
        {"record": str(wisecp_id), "vanished": True, "changes": []}
        for wisecp_id in vanished.values_list("wisecp_id", flat=True)[:200]
    ]
    deleted, _ = vanished.delete()
    counts.deleted += deleted
    counts.vanished += deleted  # gone from the mirror too: never reported twice


def invoices_sync_many(
    reads: list[tuple[dict[str, Any], datetime, int | None]],
) -> list[tuple[SyncCounts, Invoice]]:
    """A sync's flush of GetInvoice reads ((data, read_at, call) each): `invoice_upsert` and
    `delete_vanished` for many invoices, the same rules (freshness, the read guard), with the
    reads of the mirror done once for the batch, so a batch where nothing changed costs a few
    queries, and the batch's new invoices and new items written in one lean insert each (with
    their history rows), so a first sync costs a few queries per batch too. The guard takes the
    batch's earliest read (never less careful than one by one); each invoice's writes carry its
    own call in the history. Returns per read its counts and its invoice."""
    if not reads:
        return []
    wisecp_ids = [data["wisecp_id"] for data, _a, _c in reads]
    if len(set(wisecp_ids)) < len(wisecp_ids):
        # The same invoice read twice in one batch (a listing that shifted while it was read):
        # the batch is written in parts, in turn, so the later read sees what the earlier wrote.
        out: list[tuple[SyncCounts, Invoice]] = []
        part: list[tuple[dict[str, Any], datetime, int | None]] = []
        for read in reads:
            if any(d["wisecp_id"] == read[0]["wisecp_id"] for d, _a, _c in part):
                out += invoices_sync_many(part)
                part = []
            part.append(read)
        return out + invoices_sync_many(part)
    earliest = min(read_at for _data, read_at, _call in reads)
    invoices = {i.wisecp_id: i for i in _locked(Invoice.objects.filter(wisecp_id__in=wisecp_ids))}
    listed_items = [item for data, _a, _c in reads for item in data["items"] or []]
    items = {
        i.wisecp_id: i
        for i in _locked(InvoiceItem.objects.filter(wisecp_id__in=_ids(listed_items)))
    }
    held_invoices = held_back(Invoice, [i.pk for i in invoices.values()], earliest)
    held_items = held_back(InvoiceItem, [i.pk for i in items.values()], earliest)
    created = _invoices_create(
        [
            (data, read_at, call)
            for data, read_at, call in reads
            if data["wisecp_id"] not in invoices
        ]
    )
    invoices.update(created)
    out = []
    seen: set[int] = set()
    new_items: list[dict[str, Any]] = []
    new_calls: list[int | None] = []
    for data, read_at, call in reads:
        counts = SyncCounts()
        with history_call(call):
            invoice = invoices[data["wisecp_id"]]
            if data["wisecp_id"] in created:
                counts.created += 1
            elif invoice.pk not in held_invoices:
                # invoice_write's own checks, on the row read above (no query when unchanged).
                invoice = _invoice_write_known(data, invoice, read_at, counts)
            else:
                counts.held += 1
            new = _items_write_known(
                invoice, data["items"] or [], items, held_items, read_at, counts
            )
        new_items += new
        new_calls += [call] * len(new)
        seen |= {item["wisecp_id"] for item in data["items"] or []}
        out.append((counts, invoice))
    # The batch's new items, one lean write with their history rows, each with its read's call.
    insert_created(InvoiceItem, new_items, calls=new_calls)
    # Items of these invoices that no read of the batch listed: deleted or moved upstream.
    pks = {invoice.pk for _counts, invoice in out}
    vanished = list(
        _locked(
            InvoiceItem.objects.filter(invoice_id__in=pks).exclude(wisecp_id__in=seen)
        ).values_list("pk", "invoice_id")
    )
    if vanished:
        held = held_back(InvoiceItem, [pk for pk, _inv in vanished], earliest)
        by_invoice = {
            invoice.pk: (counts, call)
            for (counts, invoice), (_d, _a, call) in zip(out, reads, strict=True)
        }
        for pk, invoice_pk in vanished:
            counts, call = by_invoice[invoice_pk]
            if pk in held:
                counts.held += 1
                continue
            gone = InvoiceItem.objects.filter(pk=pk)
            counts.fields += [
                {"record": str(w), "vanished": True, "changes": []}
                for w in gone.values_list("wisecp_id", flat=True)
            ]
            with history_call(call):
                deleted, _ = gone.delete()
            counts.deleted += deleted
            counts.vanished += deleted
    return out


def _invoices_create(
    reads: list[tuple[dict[str, Any], datetime, int | None]],
) -> dict[int, Invoice]:
    """Invoices new to the mirror, in one lean write with their history rows (as `invoice_write`
    creates one: the snapshot as the database holds it); by WiseCP id."""
    values = [
        {
            "wisecp_id": data["wisecp_id"],
            "synced_at": read_at,
            **{name: data[name] for name in INVOICE_FIELDS},
        }
        for data, read_at, _call in reads
    ]
    ids = insert_created(Invoice, values, calls=[call for _d, _a, call in reads], stored_form=True)
    created = {}
    for fields, pk in zip(values, ids, strict=True):
        invoice = Invoice(pk=pk, **fields)
        invoice._state.adding, invoice._state.db = False, "default"  # as saved
        created[invoice.wisecp_id] = invoice
    return created


def _invoice_write_known(
    data: dict[str, Any], invoice: Invoice, read_at: datetime, counts: SyncCounts
) -> Invoice:
    changed = {k: data[k] for k in INVOICE_FIELDS if getattr(invoice, k) != data[k]}
    if not changed or not _fresher(invoice.synced_at, read_at):
        counts.unchanged += 1
        return invoice
    return invoice_write(data, read_at=read_at, counts=counts, guard=True)


def _items_write_known(
    invoice: Invoice,
    items: list[dict[str, Any]],
    existing: dict[int, InvoiceItem],
    held: set[int],
    read_at: datetime,
    counts: SyncCounts,
) -> list[dict[str, Any]]:
    """invoice_items_reconcile on rows already read and locked: a query more only for a changed
    item. Returns the values of the new items, for the caller's one write of the batch's."""
    unchanged, new, changed = 0, [], []
    for data in items:
        row = existing.get(data["wisecp_id"])
        if row is None:
            new.append(
                {
                    "wisecp_id": data["wisecp_id"],
                    "invoice_id": invoice.pk,
                    "synced_at": read_at,
                    **item_values(data),
                }
            )
        elif row.invoice_id == invoice.pk and not any(
            getattr(row, k) != v for k, v in item_values(data).items()
        ):
            unchanged += 1
        else:
            changed.append(data)
    counts.unchanged += unchanged
    counts.created += len(new)
    if changed:
        invoice_items_reconcile(invoice, changed, read_at=read_at, counts=counts)
    return new


def invoice_upsert(data: dict[str, Any], *, read_at: datetime, counts: SyncCounts) -> set[int]:
    """One GetInvoice answer (read from `read_at`) into the mirror: the invoice, then its items;
    what a push claimed or wrote since `read_at` is left to the push (held_back)."""
    with transaction.atomic():
        invoice = invoice_write(data, read_at=read_at, counts=counts, guard=True)
        return invoice_items_reconcile(invoice, data["items"] or [], read_at=read_at, counts=counts)


def wisecp_sync(*, recorder: CallRecorder | None = None, since: date | None = None) -> SyncCounts:
    """Mirror every invoice (created on or after `since`, when given) with its items.

    GetInvoices lists invoices without items (wisecp.md §10.11), so each is read with GetInvoice.
    """
    with history_source("sync", keep_outer=True):
        return _wisecp_sync(recorder=recorder, since=since)


def _wisecp_sync(*, recorder: CallRecorder | None, since: date | None) -> SyncCounts:
    client = WiseCPClient(recorder=recorder)
    filters: dict[str, Any] = {}
    if since is not None:
        filters["created_at_from"] = datetime.combine(since, time.min, tzinfo=ISTANBUL)
    counts = SyncCounts()
    seen: set[int] = set()
    read: set[int] = set()
    began = timezone.now()
    for row in client.iter_invoices(filters=filters):
        read_at = timezone.now()
        data = client.get_invoice(row["wisecp_id"])
        seen |= invoice_upsert(data, read_at=read_at, counts=counts)
        read.add(data["wisecp_id"])
    with transaction.atomic():
        pks = set(Invoice.objects.filter(wisecp_id__in=read).values_list("pk", flat=True))
        delete_vanished(pks, seen, counts, read_at=began)
    return counts


def invoice_refresh(invoice: Invoice, recorder: CallRecorder | None = None) -> SyncCounts:
    """Re-read one invoice and its items from WiseCP."""
    client = WiseCPClient(recorder=recorder)
    counts = SyncCounts()
    read_at = timezone.now()
    data = client.get_invoice(invoice.wisecp_id)
    actor_id = getattr(recorder, "actor_id", None)
    with history_source("refresh", actor_id=actor_id, keep_outer=True):
        seen = invoice_upsert(data, read_at=read_at, counts=counts)
        with transaction.atomic():
            delete_vanished({invoice.pk}, seen, counts, read_at=read_at)
    return counts
