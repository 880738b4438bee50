"""Money arithmetic of items and invoices, the way WiseCP computes it: pure functions over the
mirror's values. What a change may do is the item update kind's verdict (billing/pushes.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .models import Invoice, InvoiceItem

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


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


def totals_after_move(
    invoice: Invoice, *, leaving: set[int], arriving: list[InvoiceItem]
) -> Totals:
    """The invoice's estimated totals once the items `leaving` (ids) have left it and the items
    `arriving` have joined it: a bulk move's source and target invoices."""
    others = invoice.items.exclude(pk__in=leaving).values_list("total", "tax_exempt")
    return invoice_totals(invoice, [*others, *((i.total, i.tax_exempt) for i in arriving)])


def totals_after(
    invoice: Invoice, *, item: InvoiceItem, total: Decimal, tax_exempt: bool, holds_item: bool
) -> Totals:
    """The invoice's estimated totals once the item has `total`/`tax_exempt` (its other items as
    the mirror has them; the item itself only when it is, or will be, on this invoice)."""
    others = invoice.items.exclude(pk=item.pk).values_list("total", "tax_exempt")
    lines = [*others, *([(total, tax_exempt)] if holds_item else [])]
    return invoice_totals(invoice, lines)
