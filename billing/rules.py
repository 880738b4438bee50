"""What an item change may do, written once for every path: the admin edit, the API's PATCH and
the bulk preview. Pure functions over the mirror: no upstream calls, no writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils.translation import gettext as _

from upstream.calls.errors import PushConflict

from .models import Invoice, InvoiceItem, InvoiceStatus

PERM_OVERRIDE_CLOSED = "billing.override_closed_invoice"
# Local field names whose change moves money (shared/INTERFACES.md, "Every write").
MONEY_FIELDS = frozenset({"amount", "total", "quantity", "tax_exempt", "invoice"})
CLOSED_STATUSES = frozenset({InvoiceStatus.PAID, InvoiceStatus.CANCELLED, InvoiceStatus.REFUNDED})
CENT = Decimal("0.01")


class InvoiceClosed(PushConflict):
    """A money change to an item of a paid, cancelled or refunded invoice, without an override.
    Nothing was sent; the API answers 409."""


@dataclass(frozen=True)
class Block:
    """Why a change may not go out. `code` is one of "currency", "customer", "closed"."""

    code: str
    message: str
    invoice: Invoice | None = None


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def money_fields(names: Iterable[str]) -> list[str]:
    """The money-affecting fields among the changed ones (local names)."""
    return [name for name in names if name in MONEY_FIELDS]


def line_total(quantity: int, amount: Decimal) -> Decimal:
    """An item's total: quantity × unit price, to the kuruş. WiseCP does not compute it: a
    missing `total` becomes the unit price (wisecp.md §4, §7.2), so it is always sent."""
    return (Decimal(quantity) * amount).quantize(CENT, rounding=ROUND_HALF_UP)


def invoice_totals(invoice: Invoice, lines: Iterable[tuple[Decimal, bool]]) -> Totals:
    """An invoice's totals from its lines (item total, tax exempt), the way WiseCP recomputes
    them (wisecp.md §6.1, §10.8): tax on the non-exempt totals at the invoice's rate, none when
    the invoice is tax free; each rounded to 2 decimals."""
    lines = list(lines)
    subtotal = sum((total for total, _exempt in lines), Decimal(0))
    taxable = sum((total for total, exempt in lines if not exempt), Decimal(0))
    tax = Decimal(0) if invoice.taxfree else taxable * invoice.tax_rate / 100
    subtotal = subtotal.quantize(CENT, rounding=ROUND_HALF_UP)
    tax = tax.quantize(CENT, rounding=ROUND_HALF_UP)
    return Totals(subtotal=subtotal, tax=tax, total=subtotal + tax)


def totals_after(
    invoice: Invoice, *, item: InvoiceItem, total: Decimal, tax_exempt: bool, holds_item: bool
) -> Totals:
    """The invoice's estimated totals once the item has `total`/`tax_exempt` (its other items as
    the mirror has them; the item itself only when it is, or will be, on this invoice)."""
    others = invoice.items.exclude(pk=item.pk).values_list("total", "tax_exempt")
    lines = [*others, *([(total, tax_exempt)] if holds_item else [])]
    return invoice_totals(invoice, lines)


def same_customer(a: Invoice, b: Invoice) -> bool:
    """WiseCP's customer id when both invoices have one; else the customer names they show."""
    if a.user_id is not None and b.user_id is not None:
        return a.user_id == b.user_id
    name_a, name_b = a.customer.strip().casefold(), b.customer.strip().casefold()
    return bool(name_a) and name_a == name_b


def is_closed(invoice: Invoice) -> bool:
    return invoice.status in CLOSED_STATUSES


def move_blocks(
    source: Invoice, target: Invoice, *, customer: Callable[[Invoice], str] | None = None
) -> list[Block]:
    """An item may move only to an invoice of the same currency and the same customer.
    `customer` gives the name a message shows (a job's, read by every viewer, masks it)."""
    customer = customer or (lambda invoice: invoice.customer)
    blocks = []
    if source.currency != target.currency:
        blocks.append(
            Block(
                "currency",
                _("Its invoice is in %(from)s, the target in %(to)s; items carry no currency.")
                % {"from": source.currency, "to": target.currency},
                target,
            )
        )
    if not same_customer(source, target):
        blocks.append(
            Block(
                "customer",
                _(
                    "Its invoice belongs to %(from)s, the target %(invoice)s to %(to)s; an item "
                    "cannot move to another customer's invoice."
                )
                % {
                    "from": customer(source) or "—",
                    "invoice": target,
                    "to": customer(target) or "—",
                },
                target,
            )
        )
    return blocks


def closed_blocks(item: InvoiceItem, names: Iterable[str], target: Invoice | None) -> list[Block]:
    """A money change touches the item's invoice (and a move's target too): none may be closed."""
    if not money_fields(names):
        return []
    invoices = [item.invoice, *([target] if target is not None else [])]
    return [
        Block(
            "closed",
            _(
                "Invoice %(invoice)s is closed (%(status)s): the money of its items cannot be "
                "changed."
            )
            % {"invoice": invoice, "status": invoice.get_status_display()},
            invoice,
        )
        for invoice in invoices
        if is_closed(invoice)
    ]


def item_change_blocks(
    item: InvoiceItem, names: Iterable[str], target: Invoice | None
) -> list[Block]:
    """Every reason a change of `names` (local field names; `invoice` with its `target`) may not
    be sent. The single edit, the API and the bulk preview all ask this."""
    names = list(names)
    blocks = move_blocks(item.invoice, target) if target is not None else []
    return blocks + closed_blocks(item, names, target)


def closed_refusal(blocks: Iterable[Block]) -> InvoiceClosed:
    """The 409 for closed invoices: why, and how to override."""
    why = " ".join(block.message for block in blocks)
    return InvoiceClosed(
        _(
            "%(why)s To change it anyway, someone with the permission to override closed "
            "invoices ticks “Override” and gives a reason."
        )
        % {"why": why}
    )
