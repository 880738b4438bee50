"""The WiseCP push kinds, each defined once (shared/STYLE.md, "One definition per kind of push").

The invoice item update (`UpdateInvoiceItem`, wisecp.md §5.1) serves every path: the admin's
edit form and the API's PATCH (one item, in the request), the bulk actions (due date, move,
renumber, any fields: a job over a frozen selection), retries, resumes, approvals and drift
re-pushes. What staff asked is an `ItemRequest`; `verdict` is the one rule set all of them ask
(docs/decisions/013-wisecp-item-rules.md), `change_filter` the same rule as a database filter:

1. made against another version of the item: blocked (reload and make the change again);
2. nothing differs from the mirror: same, nothing is sent;
3. a move goes only to an invoice of the same currency and the same customer;
4. a money change (unit price, total, quantity, tax exemption, a move) on a paid, cancelled or
   refunded invoice, or into one, is blocked unless an override was asked by someone who holds
   `billing.override_closed_invoice`;
5. a money change needs a reason; nothing else does;
6. anything else on a closed invoice (its due date, description, sequence, linked service,
   attributes) moves no money: it changes without an override, and the verdict says the
   invoice is closed so the preview shows it.

The invoice refresh (GetInvoice per invoice) is a read-only kind of job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import reduce
from operator import or_
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import (
    Case,
    CharField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import Abs, Cast, Concat, Greatest, Round, RowNumber
from django.db.models.lookups import GreaterThan
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from security.personal import masked_copy
from upstream.calls.client import CallRecorder
from upstream.calls.errors import (
    PushConflict,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejectedError,
)
from upstream.history.changes import history_call
from upstream.history.refresh import RefreshHandler
from upstream.history.sync import SyncCounts
from upstream.history.sync_job import SyncKind, job_items_retarget
from upstream.l10n.formats import day
from upstream.l10n.stored import text
from upstream.pushes.claims import live_claims
from upstream.pushes.jobs import NewItem
from upstream.pushes.kinds import (
    Payload,
    PlannedChange,
    PushKind,
    WorkItem,
    WorkResult,
    kind_for,
    register,
)
from upstream.pushes.verdicts import Verdict, VerdictKind

from . import rules
from .client import (
    ISTANBUL,
    PAGE_LIMIT,
    ParseError,
    WiseCPClient,
    changes_applied,
    format_datetime,
    parse_datetime,
    to_money,
    to_wire,
)
from .models import Invoice, InvoiceItem, InvoiceStatus
from .sync import (
    delete_vanished,
    invoice_upsert,
    invoices_sync_many,
    invoices_write,
    items_write,
)

INVOICE_ITEM_UPDATE_KIND = "wisecp.invoice_item_update"
PERM_PUSH_ITEM = "billing.push_invoiceitem"
PERM_OVERRIDE_CLOSED = "billing.override_closed_invoice"
# Wire fields whose change makes WiseCP recompute invoice totals (wisecp.md §10.8).
TOTALS_FIELDS = frozenset({"amount", "total", "tax_exempt", "owner_id", "quantity"})
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
# Local field names whose change moves money (shared/INTERFACES.md, "Every write").
MONEY_FIELDS = frozenset({"amount", "total", "quantity", "tax_exempt", "invoice"})
CLOSED_STATUSES = frozenset({InvoiceStatus.PAID, InvoiceStatus.CANCELLED, InvoiceStatus.REFUNDED})
MONEY_LIMIT = Decimal("999999999999.99")  # Decimal(14, 2)
INT_LIMIT = 2_147_483_647  # a 32-bit integer column


# The request: what staff asked of one item, cleaned ------------------------------------------


def _strict_int(value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(_("Enter a whole number."))
    if value < minimum:
        raise ValidationError(_("Enter a number of at least %(minimum)s.") % {"minimum": minimum})
    if value > INT_LIMIT:
        # The mirror's integer columns: a bigger value would reach WiseCP and fail here.
        raise ValidationError(_("Enter a number of at most %(maximum)s.") % {"maximum": INT_LIMIT})
    return value


def clean_invoice(value: Any) -> Invoice:
    """An invoice of the mirror, given as itself or as its local id."""
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


def clean_due_date(value: Any) -> datetime | None:
    """None clears the due date (WiseCP's zero date); strings use WiseCP's own format. Seconds
    are what WiseCP keeps (wisecp.md §3), so a fraction is dropped, as the wire form drops it."""
    if value is None or isinstance(value, datetime):
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value.replace(microsecond=0) if value is not None else None
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
    "invoice": clean_invoice,
    "sequence": lambda v: _strict_int(v, minimum=0),
    "description": _clean_description,
    "quantity": lambda v: _strict_int(v, minimum=1),
    "tax_exempt": _clean_bool,
    "amount": _clean_money,
    "total": _clean_money,
    "order_id": lambda v: _strict_int(v, minimum=0),
    "due_date": clean_due_date,
    "attributes": _clean_attributes,
}


@dataclass(frozen=True)
class ItemRequest:
    """What staff asked of one item, cleaned: local field names, Python values (an Invoice for
    a move).

    `override` is true only when it was asked by someone who holds the override permission.
    `version` is the item's version the change was made against (the form opened, the launch
    saw); None judges the item as it is. `reason` None means not asked yet: a bulk preview
    shown before its reason is typed judges every other rule, and its launch judges the reason.
    `summary` is what the job page says the item changed (empty: the changed fields' names).
    """

    changes: dict[str, Any]
    reason: str | None = ""
    override: bool = False
    version: int | None = None
    summary: str = ""


def item_request(
    changes: Mapping[str, Any],
    *,
    reason: str | None = "",
    override: bool = False,
    version: int | None = None,
    summary: str = "",
) -> ItemRequest:
    """Validate `changes` (local field names) into a request. Raises ValidationError with
    per-field messages; invoices are read from the mirror, nothing else is read."""
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
    return ItemRequest(
        changes=clean, reason=reason, override=override, version=version, summary=summary
    )


def changes_json(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Cleaned changes as JSON that `item_request` reads back: an invoice by its local id, money
    as strings, a due date in WiseCP's format (the forms drift entries and job params keep)."""
    stored: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "invoice":
            value = value.pk
        elif name == "due_date":
            value = format_datetime(value)
        elif isinstance(value, Decimal):
            value = str(value)
        stored[name] = value
    return stored


# What would change: the request against the mirror -------------------------------------------


@dataclass(frozen=True)
class ItemChange:
    """What would be pushed for one item: wire field names, Python values."""

    fields: dict[str, Any]
    target: Invoice | None = None  # the invoice a move goes to

    def __bool__(self) -> bool:
        return bool(self.fields)

    @property
    def names(self) -> list[str]:
        """The changed fields by local name (`invoice` for a move)."""
        return ["invoice" if name == "owner_id" else name for name in self.fields]


def item_change(record: InvoiceItem, request: ItemRequest) -> ItemChange:
    """Only what differs from the mirror. A move becomes `owner_id` (the target's WiseCP id).
    When the unit price or the quantity changes and no total is given, the total sent is
    quantity × unit price: WiseCP would otherwise set it to the unit price (wisecp.md §7.2)."""
    asked = request.changes
    fields: dict[str, Any] = {}
    target = None
    for name, value in asked.items():
        if name == "invoice":
            if value.pk != record.invoice_id:
                target = value
                fields["owner_id"] = value.wisecp_id
        elif name == "due_date":
            if format_datetime(value) != format_datetime(record.due_date):
                fields[name] = value
        elif value != getattr(record, name):
            fields[name] = value
    if "total" not in asked and ("amount" in fields or "quantity" in fields):
        total = rules.line_total(
            fields.get("quantity", record.quantity), fields.get("amount", record.amount)
        )
        if "amount" in fields or total != record.total:
            fields["total"] = total
    elif "amount" in fields and "total" not in fields:
        # Given and equal to the mirror's, but WiseCP would set it to the unit price if left out.
        fields["total"] = asked["total"]
    return ItemChange(fields=fields, target=target)


# The rules ------------------------------------------------------------------------------------


class Rule(StrEnum):
    """Which rule blocked a change: the single path's error and status follow from it."""

    STALE = "stale"
    TOTAL = "total"
    MOVE = "move"
    CLOSED = "closed"
    REASON = "reason"


@dataclass(frozen=True)
class ItemVerdict(Verdict):
    """A verdict with the rule that blocked it and its messages, one per broken condition (a
    form shows each by its field)."""

    rule: Rule | None = None
    messages: tuple[str, ...] = ()


class InvoiceClosed(PushConflict):
    """A money change to an item of a paid, cancelled or refunded invoice, without an override.
    Nothing was sent; the API answers 409."""


def money_fields(names: Iterable[str]) -> list[str]:
    """The money-affecting fields among the changed ones (local names)."""
    return [name for name in names if name in MONEY_FIELDS]


def is_closed(invoice: Invoice) -> bool:
    return invoice.status in CLOSED_STATUSES


def same_customer(a: Invoice, b: Invoice) -> bool:
    """WiseCP's customer id when both invoices have one; else the customer names they show."""
    if a.user_id is not None and b.user_id is not None:
        return a.user_id == b.user_id
    name_a, name_b = a.customer.strip().casefold(), b.customer.strip().casefold()
    return bool(name_a) and name_a == name_b


def _customer(invoice: Invoice, masked: bool) -> str:
    return (masked_copy(invoice).customer if masked else invoice.customer) or "—"


def move_blocks(source: Invoice, target: Invoice, *, masked: bool = False) -> list[str]:
    """An item moves only to an invoice of the same currency and the same customer. `masked`:
    the message is stored where every viewer reads it (a job item's), so names are masked."""
    blocks = []
    if source.currency != target.currency:
        blocks.append(
            text(
                gettext_noop(
                    "Its invoice is in %(from)s, the target in %(to)s; items carry no currency."
                ),
                **{"from": source.currency, "to": target.currency},
            )
        )
    if not same_customer(source, target):
        blocks.append(
            text(
                gettext_noop(
                    "Its invoice belongs to %(from)s, the target %(invoice)s to %(to)s; an item "
                    "cannot move to another customer's invoice."
                ),
                **{
                    "from": _customer(source, masked),
                    "invoice": str(target),
                    "to": _customer(target, masked),
                },
            )
        )
    return blocks


def _closed_message(invoice: Invoice) -> str:
    return text(
        gettext_noop(
            "Invoice %(invoice)s is closed (%(status)s): the money of its items cannot be changed."
        ),
        invoice=str(invoice),
        status=InvoiceStatus(invoice.status).label,
    )


def _closed_note(invoice: Invoice, money: bool) -> str:
    if money:
        msgid = gettext_noop(
            "Invoice %(invoice)s is closed (%(status)s); its money changes by override."
        )
    else:
        msgid = gettext_noop(
            "Invoice %(invoice)s is closed (%(status)s); this change moves no money, so it needs "
            "no override."
        )
    return text(msgid, invoice=str(invoice), status=InvoiceStatus(invoice.status).label)


def reason_block(names: Iterable[str], reason: str | None) -> ItemVerdict | None:
    """A money change without a reason is blocked; nothing else needs one. A request whose
    reason is not asked yet (None) is not judged on it."""
    money = money_fields(names)
    if not money or reason is None or reason.strip():
        return None
    labels = ", ".join(str(InvoiceItem._meta.get_field(name).verbose_name) for name in money)
    message = text(
        gettext_noop("Give a reason: the change affects money (%(fields)s)."), fields=labels
    )
    return ItemVerdict(VerdictKind.BLOCKED, message, rule=Rule.REASON, messages=(message,))


def _blocked(rule: Rule, messages: list[str]) -> ItemVerdict:
    reason = messages[0] if len(messages) == 1 else " ".join(messages)
    return ItemVerdict(VerdictKind.BLOCKED, reason, rule=rule, messages=tuple(messages))


def refusal(verdict: ItemVerdict, record: InvoiceItem, request: ItemRequest) -> Exception:
    """A blocked verdict as the single path raises it: ValidationError (the API's 400, a form's
    field errors), PushConflict (409) for a stale version, InvoiceClosed (409) for a closed
    invoice, with how to override."""
    if verdict.rule == Rule.STALE:
        return PushConflict(
            _(
                "This invoice item changed since you opened it (version %(expected)s, now "
                "%(current)s). Reload it to see the current values, then make your change again."
            )
            % {"expected": request.version, "current": record.version},
            current_version=record.version,
        )
    if verdict.rule == Rule.CLOSED:
        return InvoiceClosed(
            _(
                "%(why)s To change it anyway, someone with the permission to override closed "
                "invoices ticks “Override” and gives a reason."
            )
            % {"why": verdict.reason}
        )
    fields = {Rule.MOVE: "invoice", Rule.REASON: "reason", Rule.TOTAL: "total"}
    return ValidationError({fields.get(verdict.rule, "__all__"): list(verdict.messages)})


# The same rules as filters on items (the verdict's queryset twin) ------------------------------


def _any(queries: Iterable[Q]) -> Q | None:
    queries = list(queries)
    return reduce(or_, queries) if queries else None


_MONEY_OUT = DecimalField(max_digits=16, decimal_places=2)


def _differs(name: str, value: Any) -> Q:
    """The item's `name` is not `value` (an expression for a renumber's position)."""
    if name == "invoice":
        return ~Q(invoice_id=value.pk)
    if name == "due_date" and value is None:
        return Q(due_date__isnull=False)
    # A negated lookup on a nullable column keeps its NULL rows (Django adds IS NOT NULL).
    return ~Q(**{name: value})


def _same_customer_filter(target: Invoice) -> Q:
    """`same_customer(item's invoice, target)` for items. Names compare without case as far as
    the database can (SQLite: ASCII letters only); the verdict before sending is the judge."""
    name = target.customer.strip()
    by_name = Q(pk__in=[])
    if name:
        by_name = Q(invoice__company_name__iexact=name) | (
            Q(invoice__company_name="") & Q(invoice__full_name__iexact=name)
        )
    if target.user_id is None:
        return by_name
    return Q(invoice__user_id=target.user_id) | (Q(invoice__user_id__isnull=True) & by_name)


def _line_total_sql(asked: Mapping[str, Any]) -> Round:
    quantity = Value(asked["quantity"]) if "quantity" in asked else F("quantity")
    amount = Value(asked["amount"], output_field=_MONEY_OUT) if "amount" in asked else F("amount")
    product = ExpressionWrapper(quantity * amount, output_field=_MONEY_OUT)
    return Round(product, 2, output_field=_MONEY_OUT)


def at_stake(old: Decimal, new: Decimal) -> Decimal:
    """What an item change weighs for the approval thresholds: the larger of the totals and of
    the change, in absolute ₺ (a ₺100 line turned into a ₺-10.000.000 credit weighs 10M)."""
    return max(abs(old), abs(new), abs(new - old))


# Bulk actions: one request for every selected item ---------------------------------------------


class BulkAction(StrEnum):
    DUE_DATE = "due_date"
    MOVE = "move"
    RENUMBER = "renumber"
    # Any editable fields, the same values on every item (the service's; no admin action).
    FIELDS = "fields"


# A renumber asks each item for its position on its invoice: 1, 2, 3… in the current order
# (`with_positions` annotates it; the window is the same in the preview and at the launch).
POSITION = "position"


def with_positions(items: QuerySet[InvoiceItem]) -> QuerySet[InvoiceItem]:
    return items.annotate(
        **{
            POSITION: Window(
                RowNumber(),
                partition_by=F("invoice_id"),
                order_by=[F("sequence").asc(), F("wisecp_id").asc()],
            )
        }
    )


@dataclass(frozen=True)
class BulkRequest:
    """What a bulk action asks of every selected item. For a renumber `request.changes` holds
    `sequence` as F(POSITION): each item is asked for its own position."""

    action: BulkAction
    request: ItemRequest

    def selection(self, items: QuerySet[InvoiceItem]) -> QuerySet[InvoiceItem]:
        """The items the action judges: the selected ones; for a renumber every item of their
        invoices, or the new numbers would clash with the others'."""
        if self.action == BulkAction.RENUMBER:
            return with_positions(
                InvoiceItem.objects.filter(invoice_id__in=items.values("invoice_id"))
            )
        return items

    def for_item(
        self, record: InvoiceItem, *, position: int | None = None, version: int | None = None
    ) -> ItemRequest:
        """The one item's request (its position: the annotated one unless given)."""
        changes = dict(self.request.changes)
        if self.action == BulkAction.RENUMBER:
            changes["sequence"] = position if position is not None else getattr(record, POSITION)
        summary = ""  # any fields: the job page names them (values may be personal)
        if self.action != BulkAction.FIELDS:
            summary = "{} → {}".format(*self.shown(record, changes))
        return replace(self.request, changes=changes, version=version, summary=summary)

    def label(self, *, masked: bool = False) -> str:
        """The value the action sets, as a title reads it. `masked`: read by every viewer (a
        job's title and parameters), so a customer's name is masked."""
        changes = self.request.changes
        if self.action == BulkAction.DUE_DATE:
            return day(changes["due_date"]) if changes["due_date"] else _("no due date")
        if self.action == BulkAction.MOVE:
            target = masked_copy(changes["invoice"]) if masked else changes["invoice"]
            return f"{target} ({target.customer})" if target.customer else str(target)
        if self.action == BulkAction.RENUMBER:
            return _("1, 2, 3… in the current order")
        return ", ".join(str(InvoiceItem._meta.get_field(n).verbose_name) for n in changes)

    def shown(self, record: InvoiceItem, changes: Mapping[str, Any]) -> tuple[str, str]:
        """Now and after, as the preview's row and the job page's summary show them."""
        if self.action == BulkAction.DUE_DATE:
            return day(record.due_date) or "—", day(changes["due_date"]) or "—"
        if self.action == BulkAction.MOVE:
            return str(record.invoice), str(changes["invoice"])
        if self.action == BulkAction.RENUMBER:
            return str(record.sequence), str(changes["sequence"])
        names = [n for n in changes if n != "invoice"]
        now = ", ".join(str(_shown_value(record, n, getattr(record, n))) for n in names)
        after = ", ".join(str(_shown_value(record, n, changes[n])) for n in names)
        if "invoice" in changes:
            now, after = f"{record.invoice} {now}".strip(), f"{changes['invoice']} {after}".strip()
        return now, after

    def params(self, label: str) -> dict[str, Any]:
        """What the job keeps to write its items later (`from_params`); `value` is the label
        every viewer reads (a customer's name masked)."""
        changes = {k: v for k, v in self.request.changes.items() if not isinstance(v, F)}
        return {
            "action": self.action.value,
            "value": label,
            "request": {
                "changes": changes_json(changes),
                "reason": self.request.reason,
                "override": self.request.override,
            },
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BulkRequest:
        stored = params["request"]
        action = BulkAction(params["action"])
        request = item_request(
            stored["changes"], reason=stored.get("reason"), override=bool(stored.get("override"))
        )
        if action == BulkAction.RENUMBER:
            request = replace(request, changes={**request.changes, "sequence": F(POSITION)})
        return cls(action=action, request=request)


def _shown_value(record: InvoiceItem, name: str, value: Any) -> Any:
    if name == "due_date":
        return day(value) or "—"
    return value


def bulk_request(
    action: str, value: Any, *, reason: str | None = "", override: bool = False
) -> BulkRequest:
    """The request of a bulk action: a due date, a target invoice (its local id or itself), no
    value (renumber), or {field: value} (fields). Raises ValidationError on `value`."""
    try:
        bulk_action = BulkAction(action)
    except ValueError:
        raise ValidationError(_("Unknown action %(action)s.") % {"action": action}) from None
    if bulk_action == BulkAction.FIELDS:
        if not isinstance(value, Mapping) or not value:
            raise ValidationError({"value": [_("Give at least one field to change.")]})
        return BulkRequest(bulk_action, item_request(value, reason=reason, override=override))
    try:
        if bulk_action == BulkAction.DUE_DATE:
            changes: dict[str, Any] = {"due_date": clean_due_date(value)}
        elif bulk_action == BulkAction.MOVE:
            changes = {"invoice": clean_invoice(value)}
        else:
            changes = {"sequence": F(POSITION)}
    except ValidationError as error:
        raise ValidationError({"value": error.messages}) from None
    request = ItemRequest(changes=changes, reason=reason, override=override)
    return BulkRequest(bulk_action, request)


# The payload ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemUpdate(Payload):
    """UpdateInvoiceItem with only the changed fields, in wire form (`owner_id` moves it).

    `version` is the item's version when the change was previewed or the form was opened;
    `from_total` its total then (what the change weighs). `reason` None: queued before the
    reason travelled with the item (its launch required one then).
    """

    item_id: int
    invoice_id: int
    changes: dict[str, Any]
    version: int | None = None
    summary: str = ""
    # A permitted user chose to change money on a closed invoice (with a reason).
    override: bool = False
    reason: str | None = None
    from_total: Decimal | None = None


def read_invoices(
    client: WiseCPClient, invoice_ids: list[int]
) -> tuple[list[tuple[dict[str, Any], datetime]], list[str]]:
    """Read invoices for their totals after an item changed; a failed read is reported, not raised.

    The item change is already confirmed at that point, so a failing read must not turn it into a
    failure: the totals stay as they were until the next refresh.
    """
    reads, problems = [], []
    for invoice_id in dict.fromkeys(invoice_ids):
        read_at = timezone.now()
        try:
            reads.append((client.get_invoice(invoice_id), read_at))
        except UpstreamError as error:
            problems.append(str(error))
    return reads, problems


def _find_item(invoice: dict[str, Any], item_id: int) -> dict[str, Any] | None:
    return next((i for i in invoice["items"] or [] if i["wisecp_id"] == item_id), None)


# The kind --------------------------------------------------------------------------------------


@register
class InvoiceItemUpdateHandler(PushKind):
    """UpdateInvoiceItem: the request, its verdict and queryset twin, the payload, the push, the
    read-back and the apply (see the module doc for the rules)."""

    kind = INVOICE_ITEM_UPDATE_KIND
    label = gettext_lazy("WiseCP: invoice item update")
    target_type = "billing.invoiceitem"
    permission = PERM_PUSH_ITEM
    service = "wisecp"
    operation = "UpdateInvoiceItem"
    payload_type = ItemUpdate
    # Staff's fields, which a re-push sends back; a due date or attributes WiseCP changed are
    # the upstream's to keep.
    drift_fields = frozenset(
        {
            "sequence",
            "description",
            "quantity",
            "tax_exempt",
            "amount",
            "total",
            "order_id",
            "invoice",
        }
    )

    # The request and its rules ----------------------------------------------------------------

    def verdict(
        self, record: InvoiceItem, request: ItemRequest, *, masked: bool = False
    ) -> ItemVerdict:
        """Will change, already so, or blocked with the reason staff read; reads the mirror
        only (the item's invoice and a move's target, loaded with the request). `masked`: the
        reason is kept where every viewer reads it (a job item's), so customers' names are
        masked. A change on a closed invoice that goes ahead says so in its reason."""
        if request.version is not None and record.version != request.version:
            stale = text(
                gettext_noop(
                    "The invoice item changed since the preview (version %(then)s, now %(now)s). "
                    "Reload it and make the change again."
                ),
                then=request.version,
                now=record.version,
            )
            return _blocked(Rule.STALE, [stale])
        change = item_change(record, request)
        if not change:
            return ItemVerdict(VerdictKind.SAME, text(gettext_noop("Already so.")))
        if any(
            abs(change.fields[n]) > MONEY_LIMIT for n in ("amount", "total") if n in change.fields
        ):
            # Only a computed total can get here (quantity × unit price); given ones are cleaned.
            return _blocked(Rule.TOTAL, [text(gettext_noop("Enter an amount."))])
        moves = move_blocks(record.invoice, change.target, masked=masked) if change.target else []
        if moves:
            return _blocked(Rule.MOVE, moves)
        invoices = [record.invoice, *([change.target] if change.target is not None else [])]
        closed = [invoice for invoice in invoices if is_closed(invoice)]
        money = bool(money_fields(change.names))
        if money and closed and not request.override:
            return _blocked(Rule.CLOSED, [_closed_message(invoice) for invoice in closed])
        if missing := reason_block(change.names, request.reason):
            return missing
        if closed:
            return ItemVerdict(VerdictKind.CHANGE, _closed_note(closed[0], money))
        return ItemVerdict(VerdictKind.CHANGE)

    def change_filter(self, request: ItemRequest) -> Q:
        """The items whose verdict is "will change", as a filter (F(POSITION) needs
        `with_positions`). Every rule of `verdict`, in the same order of precedence."""
        asked = request.changes
        differs = {name: _differs(name, value) for name, value in asked.items()}
        changed = _any(differs.values())
        if changed is None:
            return Q(pk__in=[])
        query = changed
        if request.version is not None:
            query &= Q(version=request.version)
        money = _any(q for name, q in differs.items() if name in MONEY_FIELDS)
        priced = _any(differs[n] for n in ("amount", "quantity") if n in differs)
        if priced is not None and "total" not in asked:
            too_big = Q(GreaterThan(Abs(_line_total_sql(asked)), MONEY_LIMIT))
            query &= ~(priced & too_big)
        target = asked.get("invoice")
        if target is not None:
            moves = Q(invoice__currency=target.currency) & _same_customer_filter(target)
            query &= ~differs["invoice"] | moves
        if money is not None:
            if not request.override:
                query &= ~(money & Q(invoice__status__in=CLOSED_STATUSES))
                if target is not None and is_closed(target):
                    query &= ~differs["invoice"]
            if request.reason is not None and not request.reason.strip():
                query &= ~money
        return query

    def build(self, record: InvoiceItem, request: ItemRequest) -> ItemUpdate:
        change = item_change(record, request)
        return ItemUpdate(
            item_id=record.wisecp_id,
            invoice_id=record.invoice.wisecp_id,
            changes=to_wire(change.fields),
            version=request.version if request.version is not None else record.version,
            summary=request.summary or ", ".join(change.names),
            override=request.override,
            reason=request.reason or "",
            from_total=record.total,
        )

    def request_of(
        self, payload: ItemUpdate, *, invoices: Mapping[int, Invoice] | None = None
    ) -> ItemRequest:
        """The request back from the wire-form payload. `invoices`: move targets by WiseCP id,
        read once for many payloads. ValidationError when a move's target left the mirror."""
        changes: dict[str, Any] = {}
        for name, value in payload.changes.items():
            if name == "owner_id":
                if invoices is None:
                    target = Invoice.objects.filter(wisecp_id=value).first()
                else:
                    target = invoices.get(value)
                if target is None:
                    raise ValidationError(
                        _("Invoice %(value)s is not in the mirror; refresh it from WiseCP first.")
                        % {"value": value}
                    )
                changes["invoice"] = target
            elif name == "due_date":
                changes[name] = parse_datetime(value)
            elif name in ("amount", "total"):
                changes[name] = to_money(value)
            else:
                changes[name] = value
        return ItemRequest(
            changes=changes,
            reason=payload.reason,
            override=payload.override,
            version=payload.version,
            summary=payload.summary,
        )

    def amount(self, payload: ItemUpdate) -> Decimal:
        """The larger of the item's totals before and after, and of the change (`at_stake`)."""
        if payload.from_total is None:
            return Decimal("0")
        after = payload.changes.get("total")
        return at_stake(
            payload.from_total, payload.from_total if after is None else to_money(after)
        )

    def planned(
        self,
        records: list[InvoiceItem],
        params: dict[str, Any],
        payloads: Mapping[int, dict[str, Any]] | None = None,
    ) -> list[PlannedChange]:
        """Each item's invoice and customer, its total now, and its fields now → after: from
        its item's payload (an edit, a drift re-push, a prepared bulk job) or the bulk action."""
        payloads = payloads or {}
        bulk = BulkRequest.from_params(params) if params.get("action") else None
        targets = Invoice.objects.in_bulk(
            [p["changes"]["owner_id"] for p in payloads.values() if "owner_id" in p["changes"]],
            field_name="wisecp_id",
        )
        rows = []
        for record in records:
            raw = payloads.get(record.pk)
            now, after, stake = "", "", record.total
            if raw is not None:
                payload = ItemUpdate.from_json(raw)
                stake = self.amount(payload) if payload.from_total is not None else stake
                try:
                    request = self.request_of(payload, invoices=targets)
                except ValidationError:
                    request = None
                if request is not None:
                    shown = BulkRequest(BulkAction.FIELDS, request)
                    now, after = shown.shown(record, request.changes)
            elif bulk is not None and bulk.action == BulkAction.RENUMBER:
                now, after = str(record.sequence), str(bulk.label())
            elif bulk is not None:
                now, after = bulk.shown(record, bulk.request.changes)
            rows.append(
                PlannedChange(
                    record=f"{record.invoice} · {record}",
                    customer=record.invoice.customer,
                    amount=stake,
                    current=now,
                    new=after,
                )
            )
        return rows

    def drift_verdict(self, record: InvoiceItem, request: ItemRequest) -> Verdict:
        # A move's refusal names both customers: masked for a reader who may not see them.
        return self.verdict(record, request, masked=True)

    def drift_request(
        self, record: InvoiceItem, changes: dict[str, Any], *, reason: str = ""
    ) -> ItemRequest:
        """A re-push of what the mirror expected ({field: expected} as drift entries store it:
        amounts as strings, an invoice as its local id), against the item as it is now, with the
        re-push's reason (a money change needs one, as any other)."""
        if set(changes) - self.drift_fields:
            raise ValidationError(
                {"field": [_("This field cannot be pushed to the upstream; accept it instead.")]}
            )
        return item_request(changes, version=record.version, reason=reason)

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # Just before sending, with the records claimed: the verdict again, on the item and the
        # invoices as they are now (one may have been paid since, or the item saved).
        current = InvoiceItem.objects.select_related("invoice").in_bulk(
            [int(i.target_id) for i in items]
        )
        payloads = {item.id: self.payload(item) for item in items}
        targets = Invoice.objects.in_bulk(
            [p.changes["owner_id"] for p in payloads.values() if "owner_id" in p.changes],
            field_name="wisecp_id",
        )
        stale = {}
        for item in items:
            row = current.get(int(item.target_id))
            if row is None:
                stale[item.id] = text(gettext_noop("The invoice item is no longer in the mirror."))
                continue
            try:
                request = self.request_of(payloads[item.id], invoices=targets)
            except ValidationError as error:
                why = " ".join(error.messages)
            else:
                # Kept on the job's page for every viewer: customers' names masked.
                verdict = self.verdict(row, request, masked=True)
                if verdict.kind == VerdictKind.CHANGE:
                    continue
                why = verdict.reason
            stale[item.id] = text(gettext_noop("Not sent: %(errors)s"), errors=why)
        return stale

    def expand_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("invoice")

    def expand(
        self, records: list[InvoiceItem], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        # Each tag is the version the launch saw (and a renumber's position): an item saved
        # since is skipped by the check before sending, as the preview would now judge it.
        bulk = BulkRequest.from_params(params)
        built = {}
        for record in records:
            version, _sep, position = tags[record.pk].partition(".")
            request = bulk.for_item(
                record, position=int(position) if position else None, version=int(version)
            )
            built[record.pk] = NewItem(
                target=record,
                target_repr=f"{record.invoice} · {record}",
                payload=self.build(record, request).to_json(),
            )
        return built

    # The push, its read-back and its apply --------------------------------------------------

    def concurrency(self) -> int:
        return settings.WISECP_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> WiseCPClient:
        return WiseCPClient(recorder=recorder)

    def push(self, client: WiseCPClient, item: WorkItem) -> Any:
        p = self.payload(item)
        item_at = timezone.now()
        try:
            data = client.update_invoice_item(p.item_id, p.changes)
        except UpstreamAuthError:
            raise
        except UpstreamRejectedError as error:
            # The preview said it would change and WiseCP said no: the invoice or the item is
            # not what the mirror holds. Read it back at once; the message says what WiseCP has.
            self._read_back(client, p, error)
            raise
        reads, problems = [], []
        if TOTALS_FIELDS & p.changes.keys():
            # WiseCP recomputes the invoices' totals (wisecp.md §10.8): read them.
            reads, problems = read_invoices(client, [p.invoice_id, data["owner_id"]])
        return {"item": data, "item_at": item_at, "invoices": reads, "problems": problems}

    def _read_back(self, client: WiseCPClient, p: ItemUpdate, error: UpstreamError) -> None:
        read_at = timezone.now()
        try:
            invoice = client.get_invoice(p.invoice_id)
        except UpstreamError:
            return  # the refusal stands on its own; the next sync brings the invoice
        error.read_back = {"invoice": invoice, "read_at": read_at}
        found = _find_item(invoice, p.item_id)
        status = dict(InvoiceStatus.choices).get(invoice.get("status"), invoice.get("status"))
        if found is None:
            held = _("WiseCP holds invoice %(no)s “%(status)s”, without this item.")
        else:
            held = _("WiseCP holds invoice %(no)s “%(status)s”; the item: %(fields)s.")
        fields = ", ".join(
            f"{name} {found.get(name)}" for name in p.changes if found and name in found
        )
        error.message = f"{error.message} " + held % {
            "no": invoice.get("number") or p.invoice_id,
            "status": status,
            "fields": fields,
        }

    def apply_read_back(self, results: list[WorkResult]) -> None:
        for r in results:
            counts = SyncCounts()
            invoice = r.error.read_back["invoice"]
            # The invoice and its other items are not the item's target: they name its call.
            with history_call(r.call_id):
                seen = invoice_upsert(invoice, read_at=r.error.read_back["read_at"], counts=counts)
                # An item WiseCP no longer lists on its invoice is gone from the mirror too.
                delete_vanished(
                    set(
                        Invoice.objects.filter(wisecp_id=invoice["wisecp_id"]).values_list(
                            "pk", flat=True
                        )
                    ),
                    seen,
                    counts,
                )

    def settle(self, client: WiseCPClient, item: WorkItem) -> Any | None:
        p = self.payload(item)
        owner = p.changes.get("owner_id", p.invoice_id)
        read_at = timezone.now()
        invoice = client.get_invoice(owner)
        found = _find_item(invoice, p.item_id)
        if found is None or not changes_applied(found, p.changes):
            return None
        reads, problems = [(invoice, read_at)], []
        if owner != p.invoice_id and TOTALS_FIELDS & p.changes.keys():
            more, problems = read_invoices(client, [p.invoice_id])
            reads += more
        return {"item": found, "item_at": read_at, "invoices": reads, "problems": problems}

    def describe(self, result: dict[str, Any]) -> str:
        # A single edit's summary lists the changed fields by name ("description, amount"):
        # shown by their labels in the reader's language. A bulk one ("a → b") is data.
        summary = str(result.get("summary", ""))
        names = [name.strip() for name in summary.split(",")]
        try:
            fields = [InvoiceItem._meta.get_field(name) for name in names if name]
        except FieldDoesNotExist:
            return summary
        return ", ".join(str(field.verbose_name) for field in fields)

    def apply(self, results: list[WorkResult]) -> None:
        items_write([(r.data["item"], r.data["item_at"]) for r in results])
        # Per invoice the latest read counts (as in invoices_write). The invoices are not the
        # items' target: their totals name the call of the push that read them.
        latest: dict[int, tuple[tuple[dict[str, Any], datetime], int | None]] = {}
        for r in results:
            for data, read_at in r.data["invoices"]:
                known = latest.get(data["wisecp_id"])
                if known is None or known[0][1] <= read_at:
                    latest[data["wisecp_id"]] = ((data, read_at), r.call_id)
        for read, call_id in latest.values():
            with history_call(call_id):
                invoices_write([read])
        for r in results:
            r.result = {"summary": self.payload(r.item).summary}
            if r.data["problems"]:
                note = _("Invoice totals not refreshed: %(errors)s") % {
                    "errors": " ".join(r.data["problems"])
                }
                r.message = f"{r.message} {note}".strip()


# The bulk launch -------------------------------------------------------------------------------


def item_update_kind() -> InvoiceItemUpdateHandler:
    """The registered item update kind: every path asks this one."""
    return cast(InvoiceItemUpdateHandler, kind_for(INVOICE_ITEM_UPDATE_KIND))


# The frozen selection's tag (upstream/pushes/bulk.py) and what each item weighs.
FROZEN_TAG = "frozen_tag"
AT_STAKE = "at_stake"


def _stake_sql(request: ItemRequest) -> Greatest:
    """`at_stake(total before, total after)` per item, for the job's ₺ (approval thresholds)."""
    asked = request.changes
    before = F("total")
    after: Any = before
    if "total" in asked:
        after = Value(asked["total"], output_field=_MONEY_OUT)
    elif priced := _any(_differs(n, asked[n]) for n in ("amount", "quantity") if n in asked):
        after = Case(
            When(priced, then=_line_total_sql(asked)), default=before, output_field=_MONEY_OUT
        )
    change = ExpressionWrapper(after - before, output_field=_MONEY_OUT)
    return Greatest(Abs(before), Abs(after), Abs(change), output_field=_MONEY_OUT)


def bulk_selection(items: QuerySet[InvoiceItem], bulk: BulkRequest) -> QuerySet[InvoiceItem]:
    """What a bulk job is frozen over: the items the verdict's twin lets change and no other
    save holds (the preview blocks those), tagged with the version the launch saw (and a
    renumber's position), annotated with what each weighs."""
    tag: Any = Cast("version", CharField())
    if bulk.action == BulkAction.RENUMBER:
        tag = Concat(tag, Value("."), Cast(POSITION, CharField()), output_field=CharField())
    wanted = item_update_kind().change_filter(bulk.request) & ~Q(Exists(live_claims(InvoiceItem)))
    if bulk.action == BulkAction.RENUMBER:
        # Positions count every item of the invoice, a held one too (as the preview does): the
        # whole condition must apply after the window. Django keeps a disjunction that refers
        # to a window together, after it (its QUALIFY); the second branch is never true.
        wanted |= Q(**{POSITION: 0})
    return (
        bulk.selection(items)
        .filter(wanted)
        .annotate(**{FROZEN_TAG: tag, AT_STAKE: _stake_sql(bulk.request)})
    )


INVOICE_REFRESH_KIND = "wisecp.refresh"


@register
class InvoiceRefreshHandler(RefreshHandler):
    """Re-read an invoice with its items (GetInvoice); the item lists per record what changed,
    and items WiseCP no longer lists are removed from the mirror and reported as drift."""

    kind = INVOICE_REFRESH_KIND
    label = gettext_lazy("WiseCP: refresh invoices")
    target_type = "billing.invoice"
    permission = "billing.sync_invoice"
    service = "wisecp"
    record_model = InvoiceItem

    def concurrency(self) -> int:
        return settings.WISECP_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> WiseCPClient:
        return WiseCPClient(recorder=recorder)

    def expand(
        self, records: list[Invoice], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        # Launched from a frozen selection (billing.services.invoice_refresh_start): any number
        # of invoices, written as items by the worker.
        return {r.pk: NewItem(target=r, payload={"wisecp_id": r.wisecp_id}) for r in records}

    def read(self, client: WiseCPClient, item: WorkItem) -> Any:
        read_at = timezone.now()
        return {"invoice": client.get_invoice(item.payload["wisecp_id"]), "read_at": read_at}

    def write(self, result: WorkResult) -> SyncCounts:
        counts = SyncCounts()
        invoice = Invoice.objects.get(pk=int(result.item.target_id))
        read_at = result.data["read_at"]
        seen = invoice_upsert(result.data["invoice"], read_at=read_at, counts=counts)
        delete_vanished({invoice.pk}, seen, counts, read_at=read_at)
        return counts


# --- the full sync, as a job (upstream.history.sync_job) --------------------------------------

WISECP_SYNC_KIND = "wisecp.sync"


@register
class WiseCPSyncKind(SyncKind):
    """WiseCP into the mirror: the invoice list page by page (GetInvoices, without items), then
    one item per invoice reading it with its items (GetInvoice); invoices WiseCP no longer lists
    are reported once as drift, items no longer listed are removed (as a refresh does)."""

    kind = WISECP_SYNC_KIND
    label = gettext_lazy("WiseCP: sync")
    target_type = "billing.invoice"
    permission = "billing.sync_invoice"
    service = "wisecp"
    record_model = InvoiceItem
    page_size = PAGE_LIMIT

    def concurrency(self) -> int:
        return settings.WISECP_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> WiseCPClient:
        return WiseCPClient(recorder=recorder)

    def title(self) -> Any:
        return text(gettext_noop("Sync from WiseCP"))

    def first_cursor(self) -> int:
        return 1

    def list_page(
        self, client: WiseCPClient, cursor: int, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int | None]:
        filters: dict[str, Any] = {}
        if params.get("since"):
            since = date.fromisoformat(params["since"])
            filters["created_at_from"] = datetime.combine(since, time.min, tzinfo=ISTANBUL)
        data = client.get_invoices(page=cursor, limit=self.page_size, filters=filters)
        rows = data["invoices"]
        last = not rows or cursor * data["limit"] >= data["total"]
        return rows, (None if last else cursor + 1)

    def listed(
        self, rows: list[dict[str, Any]], read_at: datetime, counts: SyncCounts
    ) -> list[NewItem]:
        # Every invoice is written from its GetInvoice read (the listing lacks some fields,
        # wisecp.md §10.11); an invoice new to the mirror gets its item's target once written.
        known = Invoice.objects.in_bulk([r["wisecp_id"] for r in rows], field_name="wisecp_id")
        return [
            NewItem(
                target=known.get(row["wisecp_id"]),  # type: ignore[arg-type]
                payload={"wisecp_id": row["wisecp_id"]},
                target_repr=str(known.get(row["wisecp_id"]) or row.get("number") or ""),
            )
            for row in rows
        ]

    def mirrored(self) -> Any:
        return Invoice.objects.all()

    def read(self, client: WiseCPClient, item: WorkItem) -> Any:
        read_at = timezone.now()
        return {"invoice": client.get_invoice(item.payload["wisecp_id"]), "read_at": read_at}

    def write(self, result: WorkResult) -> SyncCounts:
        return self.write_many([result])[0]

    def write_many(self, results: list[WorkResult]) -> list[SyncCounts]:
        # The flush's reads in bulk: one look at the mirror for the whole batch.
        written = invoices_sync_many(
            [(r.data["invoice"], r.data["read_at"], r.call_id) for r in results]
        )
        new = {
            r.item.id: str(invoice.pk)
            for r, (_c, invoice) in zip(results, written, strict=True)
            if not r.item.target_id
        }
        if new:
            # Invoices new to the mirror: their items name them now (one statement, many rows).
            job_items_retarget(new)
        return [counts for counts, _invoice in written]
