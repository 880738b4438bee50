"""Every WiseCP write: permission, then push one item or push a selection (shared/STYLE.md).

What a change may do is the item update kind's to say (billing/pushes.py): these services ask it
and hand the push to the shared layer, one item in the request or a frozen selection as a job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.actors import User, actor_require
from upstream.calls.errors import PushConflict, UpstreamError
from upstream.calls.log import DbCallRecorder
from upstream.l10n.stored import text
from upstream.models import Job, RecordClaim
from upstream.pushes.bulk import job_create_frozen
from upstream.pushes.claims import claims_holding
from upstream.pushes.single import operation_seen, push_single, repeat_single
from upstream.pushes.verdicts import Preview, Verdict, VerdictKind

from . import rules
from .models import Invoice, InvoiceItem
from .pushes import (
    AT_STAKE,
    FROZEN_TAG,
    INVOICE_ITEM_UPDATE_KIND,
    INVOICE_REFRESH_KIND,
    PERM_OVERRIDE_CLOSED,
    PERM_PUSH_ITEM,
    BulkAction,
    InvoiceClosed,  # noqa: F401  re-exported: the 409 callers catch
    ItemChange,
    ItemRequest,
    ItemVerdict,
    bulk_request,
    bulk_selection,
    is_closed,
    item_change,
    item_request,
    item_update_kind,
    reason_block,
    refusal,
)
from .sync import SyncCounts, invoice_refresh

logger = logging.getLogger(__name__)

PERM_SYNC = "billing.sync_invoice"
PREVIEW_SAMPLE = 200

# The item changed since the caller read it, or another save of it is in flight.
ConflictError = PushConflict


def _require(actor: User, perm: str = PERM_PUSH_ITEM) -> None:
    actor_require(actor, perm, _("You do not have permission to change invoice items at WiseCP."))


def _override(actor: User | None, asked: bool) -> bool:
    """An override counts only when asked by someone who holds the permission."""
    return bool(asked and actor is not None and actor.has_perm(PERM_OVERRIDE_CLOSED))


# One item --------------------------------------------------------------------------------------


def invoice_item_changes(*, item: InvoiceItem, changes: Mapping[str, Any]) -> ItemChange:
    """Validate `changes` (local field names) and keep only what differs from the mirror, in
    wire names. Raises ValidationError with per-field messages."""
    return item_change(item, item_request(changes))


def _judged(
    item: InvoiceItem,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    actor: User,
    reason: str,
    override: bool,
) -> tuple[ItemRequest, ItemVerdict]:
    """The request and the kind's verdict; a blocked one raised as the single path does."""
    request = item_request(
        changes, reason=reason, override=_override(actor, override), version=expected_version
    )
    verdict = item_update_kind().verdict(item, request)
    if verdict.kind == VerdictKind.BLOCKED:
        raise refusal(verdict, item, request)
    return request, verdict


@dataclass(frozen=True)
class InvoiceEstimate:
    invoice: Invoice
    now: rules.Totals
    after: rules.Totals
    # Paid, cancelled or refunded (the push kind's rule, billing.pushes.is_closed).
    closed: bool = False

    @property
    def effect(self) -> Decimal:
        """What the change does to the invoice's total (₺; negative: it goes down)."""
        return self.after.total - self.now.total


@dataclass(frozen=True)
class ItemPreview:
    """What an item change would send and do, estimated from the mirror; sends nothing."""

    change: ItemChange
    rows: list[tuple[str, Any, Any]]  # (local field name, old, new)
    total: Decimal  # the item's line total after the change
    invoices: list[InvoiceEstimate]  # its invoice, and a move's target
    note: str = ""  # what the verdict says of a change that goes ahead (a closed invoice)


def invoice_item_preview(
    *,
    item: InvoiceItem,
    changes: Mapping[str, Any],
    expected_version: int,
    actor: User,
    reason: str = "",
    override: bool = False,
) -> ItemPreview:
    """The single edit's confirmation: old → new per changed field, the new line total and the
    invoices' estimated totals (wisecp.md §10.8: WiseCP recomputes them after the push; they
    are read back then). Refused as `invoice_item_update` would refuse it; `change` is empty
    when nothing differs. Sends nothing."""
    _require(actor)
    request, verdict = _judged(
        item,
        changes,
        expected_version=expected_version,
        actor=actor,
        reason=reason,
        override=override,
    )
    change = item_change(item, request)
    rows = []
    for name, value in change.fields.items():
        if name == "owner_id":
            rows.append(("invoice", item.invoice, change.target))
        else:
            rows.append((name, getattr(item, name), value))
    total = change.fields.get("total", item.total)
    tax_exempt = change.fields.get("tax_exempt", item.tax_exempt)
    invoices = [item.invoice, *([change.target] if change.target is not None else [])]
    estimates = [
        InvoiceEstimate(
            invoice=invoice,
            now=rules.Totals(invoice.subtotal, invoice.tax, invoice.total),
            after=rules.totals_after(
                invoice,
                item=item,
                total=total,
                tax_exempt=tax_exempt,
                holds_item=invoice == (change.target or item.invoice),
            ),
        )
        for invoice in invoices
    ]
    note = verdict.reason if verdict.kind == VerdictKind.CHANGE else ""
    return ItemPreview(change=change, rows=rows, total=total, invoices=estimates, note=note)


def invoice_item_update(
    *,
    item: InvoiceItem,
    changes: Mapping[str, Any],
    expected_version: int,
    actor: User,
    reason: str = "",
    override: bool = False,
    idempotency_key: str = "",
) -> InvoiceItem:
    """Push `UpdateInvoiceItem` with the fields that really changed; mirror WiseCP's answer.

    The same operation as a bulk job's item (kind `wisecp.invoice_item_update`), run inline,
    judged by the same verdict: ValidationError for bad input, a move to another currency's or
    customer's invoice or a money change without a reason; InvoiceClosed (409) for a money
    change on a closed invoice without a permitted override; ConflictError (409) when the item
    is no longer at `expected_version` or another push of it is in flight. A move (`invoice`)
    sends `owner_id`; when totals change, the affected invoices are read back with GetInvoice
    and their totals written. On a refusal or failure the mirror is unchanged and the error
    (UpstreamError) is raised; an answer that never came raises PushInDoubt with the job that
    settles it by reading back.

    Call it outside a transaction: the operation, the claim and the call log are committed on
    their own, and no database transaction may stay open across the HTTP request.
    """
    _require(actor)
    if operation_seen(actor, idempotency_key):
        # A double submit: answered as the first was (its change already made the version
        # move on, so the verdict would call the user's own change stale).
        repeat_single(
            actor=actor, idempotency_key=idempotency_key, kind=INVOICE_ITEM_UPDATE_KIND, target=item
        )
        return InvoiceItem.objects.select_related("invoice").get(pk=item.pk)
    item = InvoiceItem.objects.select_related("invoice").get(pk=item.pk)
    request, verdict = _judged(
        item,
        changes,
        expected_version=expected_version,
        actor=actor,
        reason=reason,
        override=override,
    )
    if verdict.kind == VerdictKind.SAME:
        return item
    kind = item_update_kind()
    payload = kind.build(item, request)
    push_single(
        kind=INVOICE_ITEM_UPDATE_KIND,
        target=item,
        target_repr=f"{item.invoice} · {item}",
        payload=payload.to_json(),
        actor=actor,
        reason=reason,
        idempotency_key=idempotency_key,
        amount=kind.amount(payload),
        title=text(gettext_noop("Update invoice item %(item)s"), item=str(item)),
    )
    return InvoiceItem.objects.select_related("invoice").get(pk=item.pk)


# Bulk ------------------------------------------------------------------------------------------


@dataclass
class BulkRow:
    item: InvoiceItem
    kind: VerdictKind
    current: str
    new: str
    reason: str = ""
    # The item's invoice is closed (the push kind's rule): flagged on the preview.
    closed: bool = False


@dataclass
class BulkPreview(Preview):
    """What a bulk action would do to each item, before anything is sent. `notes` counts what
    the verdicts say of changes that go ahead (items of closed invoices)."""

    action: BulkAction | None = None
    value_label: str = ""
    rows: list[BulkRow] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    # The invoices the change touches, with their ₺ totals now and after (as the single edit
    # shows them): a move's sources and its target; a due date or a renumber leaves them as is.
    invoices: list[InvoiceEstimate] = field(default_factory=list)
    # A move's target invoice (its status is shown beside its number).
    target: Invoice | None = None

    def __post_init__(self) -> None:
        for row in self.rows:
            self.tally(Verdict(row.kind, row.reason))
            if row.kind == VerdictKind.CHANGE and row.reason:
                self.notes[row.reason] = self.notes.get(row.reason, 0) + 1

    @property
    def sample(self) -> list[BulkRow]:
        return self.rows[:PREVIEW_SAMPLE]


def invoice_item_bulk_preview(
    *,
    items: QuerySet[InvoiceItem],
    action: str,
    value: Any = None,
    reason: str | None = None,
    override: bool = False,
    actor: User | None = None,
) -> BulkPreview:
    """The kind's verdict per item (will change / unchanged / blocked with a reason); sends
    nothing. `reason` None: not asked yet, so it is judged at the launch; an override counts
    when `actor` may override. An item another save holds is blocked while it does."""
    bulk = bulk_request(action, value, reason=reason, override=_override(actor, override))
    kind = item_update_kind()
    # Few records are being pushed at any moment: read their claims once.
    busy = set(
        RecordClaim.objects.filter(
            claims_holding(), target_type=InvoiceItem._meta.label_lower
        ).values_list("target_id", flat=True)
    )
    ordered = (
        bulk.selection(items)
        .select_related("invoice")
        .order_by("invoice_id", "sequence", "wisecp_id")
    )
    rows: list[BulkRow] = []
    for item in ordered.iterator(chunk_size=2000):
        request = bulk.for_item(item)
        verdict = kind.verdict(item, request)
        current, new = bulk.shown(item, request.changes)
        row = BulkRow(item, verdict.kind, current, new, verdict.reason, is_closed(item.invoice))
        if verdict.kind != VerdictKind.SAME and str(item.pk) in busy:
            row.kind, row.reason = VerdictKind.BLOCKED, _("Another save is in progress.")
        rows.append(row)
    target = bulk.request.changes.get("invoice") if bulk.action == BulkAction.MOVE else None
    return BulkPreview(
        action=bulk.action,
        value_label=bulk.label(),
        rows=rows,
        invoices=_bulk_estimates(rows, target),
        target=target,
    )


# At most this many invoices are estimated on a bulk preview (each costs a query).
ESTIMATED_INVOICES = 20


def _bulk_estimates(rows: list[BulkRow], target: Invoice | None) -> list[InvoiceEstimate]:
    """Each touched invoice's totals now and after the items that will change have changed."""
    moving = [r.item for r in rows if r.kind == VerdictKind.CHANGE]
    sources: dict[int, Invoice] = {}
    for item in moving:
        sources.setdefault(item.invoice_id, item.invoice)
    estimates = []
    for invoice in list(sources.values())[:ESTIMATED_INVOICES]:
        now = rules.Totals(invoice.subtotal, invoice.tax, invoice.total)
        after = (
            rules.totals_after_move(
                invoice, leaving={i.pk for i in moving if i.invoice_id == invoice.pk}, arriving=[]
            )
            if target is not None and target.pk != invoice.pk
            else now
        )
        estimates.append(
            InvoiceEstimate(invoice=invoice, now=now, after=after, closed=is_closed(invoice))
        )
    if target is not None:
        arriving = [i for i in moving if i.invoice_id != target.pk]
        estimates.append(
            InvoiceEstimate(
                invoice=target,
                now=rules.Totals(target.subtotal, target.tax, target.total),
                after=rules.totals_after_move(target, leaving=set(), arriving=arriving),
                closed=is_closed(target),
            )
        )
    return estimates


def invoice_item_bulk_update(
    *,
    items: QuerySet[InvoiceItem],
    action: str,
    value: Any,
    actor: User,
    reason: str = "",
    override: bool = False,
) -> Job:
    """Queue one UpdateInvoiceItem per item that would change (a job of kind
    `wisecp.invoice_item_update`): a new due date, a move to another invoice (both invoices'
    totals are read back), sequence 1..n per invoice in the current order, or any fields.

    The selection is frozen as it is now (upstream/pushes/bulk.py), filtered by the
    verdict's queryset twin: the same few statements for 500 or 50,000 items. The worker writes
    the items, and each is judged again by the verdict just before it is sent (an item saved
    since the launch is skipped). The mirror changes per item when WiseCP confirms it.
    """
    _require(actor)
    bulk = bulk_request(action, value, reason=reason or "", override=_override(actor, override))
    if missing := reason_block(bulk.request.changes, bulk.request.reason):
        raise ValidationError({"reason": list(missing.messages)})
    # The job's title and parameters are read by every viewer: the customer's name masked.
    label = bulk.label(masked=True)
    titles = {
        BulkAction.DUE_DATE: gettext_noop("Set due date of %(count)s invoice items to %(value)s"),
        BulkAction.MOVE: gettext_noop("Move %(count)s invoice items to invoice %(value)s"),
        BulkAction.RENUMBER: gettext_noop("Renumber %(count)s invoice items"),
        BulkAction.FIELDS: gettext_noop("Change %(value)s of %(count)s invoice items"),
    }
    return job_create_frozen(
        kind=INVOICE_ITEM_UPDATE_KIND,
        queryset=bulk_selection(items, bulk),
        tag=FROZEN_TAG,
        # A credit line weighs as much as a charge: the approval looks at the ₺ moved.
        amount=AT_STAKE,
        title=lambda count: text(titles[bulk.action], count=count, value=label),
        actor=actor,
        params=bulk.params(label),
        reason=(reason or "").strip(),
    )


# Refresh -----------------------------------------------------------------------------------


def invoice_refresh_many(
    *, invoices: QuerySet[Invoice], actor: User
) -> tuple[SyncCounts, list[str]]:
    """Re-read the invoices from WiseCP; returns the summed counts and one message per failure."""
    _require(actor, PERM_SYNC)
    recorder = DbCallRecorder(actor=actor)
    totals, failures = SyncCounts(), []
    for invoice in invoices.order_by("wisecp_id"):
        try:
            totals.add(invoice_refresh(invoice, recorder=recorder))
        except UpstreamError as error:
            failures.append(f"{invoice}: {error}")
    return totals, failures


def invoice_refresh_start(*, invoices: QuerySet[Invoice], actor: User) -> Job:
    """Queue a refresh job over every selected invoice, however many: each re-read from WiseCP
    with its items (GetInvoice); each item lists per record what changed.

    The selection is frozen in a few statements and written as items by the worker.
    """
    _require(actor, PERM_SYNC)
    return job_create_frozen(
        kind=INVOICE_REFRESH_KIND,
        queryset=invoices,
        title=lambda count: text(
            gettext_noop("Refresh %(count)s invoices from WiseCP"), count=count
        ),
        actor=actor,
    )
