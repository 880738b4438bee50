"""Every WiseCP write: validate -> push -> record -> apply (shared/STYLE.md, "One push")."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from security.personal import masked_copy
from upstream.actors import User, actor_require
from upstream.calls.errors import PushConflict, UpstreamError
from upstream.calls.log import DbCallRecorder
from upstream.l10n.formats import day
from upstream.l10n.stored import text
from upstream.models import Job, RecordClaim
from upstream.pushes.jobs import NewItem, job_create
from upstream.pushes.single import operation_seen, push_single, repeat_single
from upstream.pushes.verdicts import Preview, Verdict, VerdictKind

from . import rules
from .client import ParseError, format_datetime, parse_datetime, to_wire
from .models import Invoice, InvoiceItem
from .pushes import INVOICE_ITEM_UPDATE_KIND, PERM_PUSH_ITEM, ItemUpdate
from .sync import SyncCounts, invoice_refresh

logger = logging.getLogger(__name__)

PERM_SYNC = "billing.sync_invoice"
# Local names of the fields staff may change (shared/INTERFACES.md, PATCH /api/invoice-items/).
EDITABLE_FIELDS = (
    "invoice",
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
MONEY_LIMIT = Decimal("999999999999.99")  # Decimal(14, 2)
INT_LIMIT = 2_147_483_647  # a 32-bit integer column
PREVIEW_SAMPLE = 200


# The item changed since the caller read it, or another save of it is in flight.
ConflictError = PushConflict
InvoiceClosed = rules.InvoiceClosed


def _require(actor: User, perm: str = PERM_PUSH_ITEM) -> None:
    actor_require(actor, perm, _("You do not have permission to change invoice items at WiseCP."))


# Validation --------------------------------------------------------------------------------


def _strict_int(value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(_("Enter a whole number."))
    if value < minimum:
        raise ValidationError(_("Enter a number of at least %(minimum)s.") % {"minimum": minimum})
    if value > INT_LIMIT:
        # The mirror's integer columns: a bigger value would reach WiseCP and fail here.
        raise ValidationError(_("Enter a number of at most %(maximum)s.") % {"maximum": INT_LIMIT})
    return value


def _clean_invoice(value: Any) -> Invoice:
    if isinstance(value, Invoice):
        return value
    invoice = None
    if isinstance(value, int) and not isinstance(value, bool):
        invoice = Invoice.objects.filter(pk=value).first()
    if invoice is None:
        raise ValidationError(
            _("Invoice %(value)s is not in the mirror; refresh it from WiseCP first.")
            % {"value": value}
        )
    return invoice


def _clean_description(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(_("Enter a description."))
    return value


def _clean_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(_("Enter true or false."))
    return value


def _clean_money(value: Any) -> Decimal:
    try:
        if isinstance(value, bool) or value is None:
            raise InvalidOperation
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(_("Enter an amount.")) from None
    if not number.is_finite() or abs(number) > MONEY_LIMIT:
        raise ValidationError(_("Enter an amount."))
    if number.as_tuple().exponent < -2:
        raise ValidationError(_("The amount can have at most two decimals."))
    return number


def _clean_due_date(value: Any) -> datetime | None:
    """None clears the due date (WiseCP's zero date); strings use WiseCP's own format."""
    if value is None or isinstance(value, datetime):
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value
    if isinstance(value, date):
        return parse_datetime(format_datetime(value))
    if isinstance(value, str):
        try:
            return parse_datetime(value.strip())
        except ParseError:
            pass
    raise ValidationError(_("Enter the due date as YYYY-MM-DD HH:MM:SS."))


def _clean_attributes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(_("Attributes must be a JSON object."))
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValidationError(_("Attributes must be a JSON object.")) from None
    return value


_CLEANERS: dict[str, Callable[[Any], Any]] = {
    "invoice": _clean_invoice,
    "sequence": lambda v: _strict_int(v, minimum=0),
    "description": _clean_description,
    "quantity": lambda v: _strict_int(v, minimum=1),
    "tax_exempt": _clean_bool,
    "amount": _clean_money,
    "total": _clean_money,
    "order_id": lambda v: _strict_int(v, minimum=0),
    "due_date": _clean_due_date,
    "attributes": _clean_attributes,
}


@dataclass(frozen=True)
class ItemChange:
    """What would be pushed for one item: wire field names, Python values."""

    fields: dict[str, Any]
    target: Invoice | None = None  # the invoice a move goes to

    def __bool__(self) -> bool:
        return bool(self.fields)

    @property
    def names(self) -> list[str]:
        return ["invoice" if name == "owner_id" else name for name in self.fields]


def invoice_item_changes(*, item: InvoiceItem, changes: Mapping[str, Any]) -> ItemChange:
    """Validate `changes` (local field names) and keep only what differs from the mirror.

    Raises ValidationError with per-field messages. A move becomes `owner_id` (the target's WiseCP
    id). When the unit price or the quantity changes and no total is given, the total sent is
    quantity × unit price: WiseCP would otherwise set it to the unit price (wisecp.md §7.2).
    """
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        errors["__all__"] = [
            _("These fields cannot be changed: %(fields)s.") % {"fields": ", ".join(unknown)}
        ]
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _CLEANERS:
            try:
                clean[name] = _CLEANERS[name](value)
            except ValidationError as error:
                errors[name] = error.messages
    if errors:
        raise ValidationError(errors)

    fields: dict[str, Any] = {}
    target = None
    for name, value in clean.items():
        if name == "invoice":
            if value.pk != item.invoice_id:
                target = value
                fields["owner_id"] = value.wisecp_id
        elif name == "due_date":
            if format_datetime(value) != format_datetime(item.due_date):
                fields[name] = value
        elif value != getattr(item, name):
            fields[name] = value
    if "total" not in clean and ("amount" in fields or "quantity" in fields):
        total = rules.line_total(
            fields.get("quantity", item.quantity), fields.get("amount", item.amount)
        )
        if abs(total) > MONEY_LIMIT:
            raise ValidationError({"total": [_("Enter an amount.")]})
        if "amount" in fields or total != item.total:
            fields["total"] = total
    elif "amount" in fields and "total" not in fields:
        # Given and equal to the mirror's, but WiseCP would set it to the unit price if left out.
        fields["total"] = clean["total"]
    return ItemChange(fields=fields, target=target)


def invoice_item_check(
    *, item: InvoiceItem, change: ItemChange, actor: User, reason: str = "", override: bool = False
) -> None:
    """The rules (billing/rules.py) for one item change, before anything is sent.

    Raises ValidationError for a move to another currency's or customer's invoice and for a
    money change without a reason; InvoiceClosed (a PushConflict, 409) for a money change on a
    paid, cancelled or refunded invoice unless `override` is asked by a user who may.
    """
    blocks = rules.item_change_blocks(item, change.names, change.target)
    moves = [b.message for b in blocks if b.code != "closed"]
    if moves:
        raise ValidationError({"invoice": moves})
    closed = [b for b in blocks if b.code == "closed"]
    if closed and not (override and actor.has_perm(rules.PERM_OVERRIDE_CLOSED)):
        raise rules.closed_refusal(closed)
    money = rules.money_fields(change.names)
    if money and not (reason or "").strip():
        labels = ", ".join(str(InvoiceItem._meta.get_field(name).verbose_name) for name in money)
        raise ValidationError(
            {
                "reason": [
                    _("Give a reason: the change affects money (%(fields)s).") % {"fields": labels}
                ]
            }
        )


@dataclass(frozen=True)
class InvoiceEstimate:
    invoice: Invoice
    now: rules.Totals
    after: rules.Totals


@dataclass(frozen=True)
class ItemPreview:
    """What an item change would send and do, estimated from the mirror; sends nothing."""

    change: ItemChange
    rows: list[tuple[str, Any, Any]]  # (local field name, old, new)
    total: Decimal  # the item's line total after the change
    invoices: list[InvoiceEstimate]  # its invoice, and a move's target


def invoice_item_preview(*, item: InvoiceItem, change: ItemChange) -> ItemPreview:
    """Old → new per changed field, the new line total and the invoices' estimated totals
    (wisecp.md §10.8: WiseCP recomputes them after the push; these are read back then)."""
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
    return ItemPreview(change=change, rows=rows, total=total, invoices=estimates)


# One item ----------------------------------------------------------------------------------


def _stale(expected_version: int, current_version: int) -> ConflictError:
    return ConflictError(
        _(
            "This invoice item changed since you opened it (version %(expected)s, now "
            "%(current)s). Reload it to see the current values, then make your change again."
        )
        % {"expected": expected_version, "current": current_version},
        current_version=current_version,
    )


def _at_stake(old: Decimal, new: Decimal) -> Decimal:
    """What an item change weighs for the approval thresholds: the larger of the totals and of
    the change, in absolute ₺ (a ₺100 line turned into a ₺-10.000.000 credit weighs 10M)."""
    return max(abs(old), abs(new), abs(new - old))


def _new_total(item: InvoiceItem, fields: Mapping[str, Any]) -> Decimal:
    value = fields.get("total", item.total)
    return value if isinstance(value, Decimal) else item.total


def invoice_item_version_check(*, item: InvoiceItem, expected_version: int) -> None:
    """ConflictError when the caller read an older version; for previews, before any push."""
    if expected_version != item.version:
        raise _stale(expected_version, item.version)


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

    The same operation as a bulk job's item (kind `wisecp.invoice_item_update`), run inline.
    Refused with ConflictError when the item is no longer at `expected_version` or another push
    of it is in flight. A move (`invoice`) sends `owner_id`; when totals change, the affected
    invoices are read back with GetInvoice and their totals written. On a refusal or failure
    the mirror is unchanged and the error (UpstreamError, ValidationError) is raised; an answer
    that never came raises PushInDoubt with the job that settles it by reading back.

    Call it outside a transaction: the operation, the claim and the call log are committed on
    their own, and no database transaction may stay open across the HTTP request.
    """
    _require(actor)
    if operation_seen(actor, idempotency_key):
        # A double submit: answered as the first was (its change already made the version
        # move on, so the checks below would call the user's own change stale).
        repeat_single(
            actor=actor, idempotency_key=idempotency_key, kind=INVOICE_ITEM_UPDATE_KIND, target=item
        )
        return InvoiceItem.objects.select_related("invoice").get(pk=item.pk)
    item = InvoiceItem.objects.select_related("invoice").get(pk=item.pk)
    change = invoice_item_changes(item=item, changes=changes)
    invoice_item_check(item=item, change=change, actor=actor, reason=reason, override=override)
    if expected_version != item.version:
        raise _stale(expected_version, item.version)
    if not change:
        return item

    push_single(
        kind=INVOICE_ITEM_UPDATE_KIND,
        target=item,
        target_repr=f"{item.invoice} · {item}",
        payload=ItemUpdate(
            item_id=item.wisecp_id,
            invoice_id=item.invoice.wisecp_id,
            changes=to_wire(change.fields),
            version=expected_version,
            summary=", ".join(change.names),
            override=override,
        ).to_json(),
        actor=actor,
        reason=reason,
        idempotency_key=idempotency_key,
        # The money at stake: the item's total after the change (or as it is).
        amount=_at_stake(item.total, _new_total(item, change.fields)),
        title=text(gettext_noop("Update invoice item %(item)s"), item=str(item)),
    )
    return InvoiceItem.objects.select_related("invoice").get(pk=item.pk)


# Bulk --------------------------------------------------------------------------------------


class BulkAction(StrEnum):
    DUE_DATE = "due_date"
    MOVE = "move"
    RENUMBER = "renumber"


@dataclass
class BulkRow:
    item: InvoiceItem
    kind: VerdictKind
    current: str
    new: str
    reason: str = ""
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass
class BulkPreview(Preview):
    """What a bulk action would do to each item, before anything is sent."""

    action: BulkAction | None = None
    value_label: str = ""
    rows: list[BulkRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        for row in self.rows:
            self.tally(Verdict(row.kind, row.reason))

    @property
    def sample(self) -> list[BulkRow]:
        return self.rows[:PREVIEW_SAMPLE]


def _bulk_value(action: BulkAction, value: Any) -> Any:
    if action == BulkAction.DUE_DATE:
        try:
            return _clean_due_date(value)
        except ValidationError as error:
            raise ValidationError({"value": error.messages}) from None
    if action == BulkAction.MOVE:
        try:
            return _clean_invoice(value)
        except ValidationError as error:
            raise ValidationError({"value": error.messages}) from None
    return None


def _value_label(action: BulkAction, value: Any, *, masked: bool = False) -> str:
    if action == BulkAction.DUE_DATE:
        return day(value) if value is not None else _("no due date")
    if action == BulkAction.MOVE:
        if masked:
            value = masked_copy(value)
        return f"{value} ({value.customer})" if value.customer else str(value)
    return _("1, 2, 3… in the current order")


def _bulk_rows(items: QuerySet[InvoiceItem], action: BulkAction, value: Any) -> list[BulkRow]:
    # Few records are being pushed at any moment: read their claims once.
    busy = set(
        RecordClaim.objects.filter(
            target_type=InvoiceItem._meta.label_lower, until__gte=timezone.now()
        ).values_list("target_id", flat=True)
    )
    rows: list[BulkRow] = []
    if action == BulkAction.RENUMBER:
        # The whole invoice is renumbered, or the new numbers would clash with its other items.
        items = InvoiceItem.objects.filter(invoice_id__in=items.values("invoice_id"))
    ordered = items.select_related("invoice").order_by("invoice_id", "sequence", "wisecp_id")
    position: dict[int, int] = {}
    target = value if action == BulkAction.MOVE else None
    for item in ordered.iterator(chunk_size=2000):
        if action == BulkAction.DUE_DATE:
            current, new = day(item.due_date) or "—", day(value) or "—"
            same = format_datetime(item.due_date) == format_datetime(value)
            changes = {"due_date": format_datetime(value)}
        elif action == BulkAction.MOVE:
            current, new = str(item.invoice), str(value)
            same = item.invoice_id == value.pk
            changes = {"owner_id": value.wisecp_id}
        else:
            position[item.invoice_id] = position.get(item.invoice_id, 0) + 1
            current, new = str(item.sequence), str(position[item.invoice_id])
            same = item.sequence == position[item.invoice_id]
            changes = {"sequence": position[item.invoice_id]}
        row = BulkRow(item=item, kind=VerdictKind.CHANGE, current=current, new=new)
        if same:
            row.kind, row.reason = VerdictKind.SAME, _("Already so.")
        elif str(item.pk) in busy:
            row.kind, row.reason = VerdictKind.BLOCKED, _("Another save is in progress.")
        elif blocks := rules.item_change_blocks(
            item, ["invoice" if name == "owner_id" else name for name in changes], target
        ):
            row.kind, row.reason = VerdictKind.BLOCKED, " ".join(b.message for b in blocks)
        else:
            row.changes = changes
        rows.append(row)
    return rows


def invoice_item_bulk_preview(
    *, items: QuerySet[InvoiceItem], action: str, value: Any = None
) -> BulkPreview:
    """The verdict per item (will change / unchanged / blocked with a reason); sends nothing."""
    try:
        bulk_action = BulkAction(action)
    except ValueError:
        raise ValidationError(_("Unknown action %(action)s.") % {"action": action}) from None
    value = _bulk_value(bulk_action, value)
    return BulkPreview(
        action=bulk_action,
        value_label=_value_label(bulk_action, value),
        rows=_bulk_rows(items, bulk_action, value),
    )


def invoice_item_bulk_update(
    *, items: QuerySet[InvoiceItem], action: str, value: Any, actor: User, reason: str
) -> Job:
    """Queue one UpdateInvoiceItem per item that would change (a job of kind
    `wisecp.invoice_item_update`): a new due date, a move to another invoice (both invoices'
    totals are read back), or sequence 1..n per invoice in the current order. The mirror changes
    per item when WiseCP confirms it.
    """
    _require(actor)
    if not (reason or "").strip():
        raise ValidationError(_("Give a reason for the change."))
    preview = invoice_item_bulk_preview(items=items, action=action, value=value)
    new_items = [
        NewItem(
            target=row.item,
            target_repr=f"{row.item.invoice} · {row.item}",
            payload=ItemUpdate(
                item_id=row.item.wisecp_id,
                invoice_id=row.item.invoice.wisecp_id,
                changes=row.changes,
                version=row.item.version,
                summary=f"{row.current} → {row.new}",
            ).to_json(),
        )
        for row in preview.rows
        if row.kind == VerdictKind.CHANGE
    ]
    # The job's title and parameters are read by every viewer: the customer's name masked.
    label = _value_label(preview.action, _bulk_value(preview.action, value), masked=True)
    titles = {
        BulkAction.DUE_DATE: gettext_noop("Set due date of %(count)s invoice items to %(value)s"),
        BulkAction.MOVE: gettext_noop("Move %(count)s invoice items to invoice %(value)s"),
        BulkAction.RENUMBER: gettext_noop("Renumber %(count)s invoice items"),
    }
    # A credit line weighs as much as a charge: the approval looks at the ₺ moved, not its sign.
    changing = [abs(row.item.total) for row in preview.rows if row.kind == VerdictKind.CHANGE]
    return job_create(
        amount=sum(changing, Decimal("0")),
        kind=INVOICE_ITEM_UPDATE_KIND,
        title=text(titles[preview.action], count=len(new_items), value=label),
        items=new_items,
        actor=actor,
        params={"action": preview.action.value, "value": label},
        reason=reason.strip(),
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
    """Queue a refresh job: each invoice re-read from WiseCP with its items (GetInvoice); each
    item lists per record what changed."""
    from .pushes import INVOICE_REFRESH_KIND

    _require(actor, PERM_SYNC)
    rows = list(invoices.order_by("wisecp_id")[:10_000])
    return job_create(
        kind=INVOICE_REFRESH_KIND,
        title=_("Refresh %(count)s invoices from WiseCP") % {"count": len(rows)},
        items=[NewItem(target=i, payload={"wisecp_id": i.wisecp_id}) for i in rows],
        actor=actor,
    )
