"""Bulk WiseCP pushes as a job kind: what each item sends, how it is read back, how it is applied.

Every bulk action (due date, move, renumber) is an UpdateInvoiceItem with a few fields, so one
kind serves them all; the payload carries the wire-form change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from security.personal import masked_copy
from upstream.calls.client import CallRecorder
from upstream.calls.errors import UpstreamAuthError, UpstreamError, UpstreamRejectedError
from upstream.history.refresh import RefreshHandler
from upstream.history.sync import SyncCounts
from upstream.l10n.stored import text
from upstream.pushes.kinds import JobKind, Payload, WorkItem, WorkResult, register

from . import rules
from .client import WiseCPClient, changes_applied
from .models import Invoice, InvoiceItem, InvoiceStatus
from .sync import delete_vanished, invoice_upsert, invoices_write, items_write

INVOICE_ITEM_UPDATE_KIND = "wisecp.invoice_item_update"
PERM_PUSH_ITEM = "billing.push_invoiceitem"
# Wire fields whose change makes WiseCP recompute invoice totals (wisecp.md §10.8).
TOTALS_FIELDS = frozenset({"amount", "total", "tax_exempt", "owner_id", "quantity"})


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


def _masked_customer(invoice: Invoice) -> str:
    return masked_copy(invoice).customer


@dataclass(frozen=True)
class ItemUpdate(Payload):
    """UpdateInvoiceItem with only the changed fields, in wire form (`owner_id` moves it).

    `version` is the item's version when the change was previewed or the form was opened.
    """

    item_id: int
    invoice_id: int
    changes: dict[str, Any]
    version: int | None = None
    summary: str = ""
    # A permitted user chose to change money on a closed invoice (with a reason).
    override: bool = False


@register
class InvoiceItemUpdateHandler(JobKind):
    kind = INVOICE_ITEM_UPDATE_KIND
    label = gettext_lazy("WiseCP: invoice item update")
    target_type = "billing.invoiceitem"
    permission = PERM_PUSH_ITEM
    service = "wisecp"
    operation = "UpdateInvoiceItem"
    payload_type = ItemUpdate

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # Every write to the row bumps its version: a newer one means the item changed since
        # the preview (a single save, a sync), and this change must not be sent over it.
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
            p = payloads[item.id]
            row = current.get(int(item.target_id))
            if row is None:
                stale[item.id] = text(gettext_noop("The invoice item is no longer in the mirror."))
                continue
            if p.version is not None and row.version != p.version:
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: the invoice item changed since the preview (version %(then)s, "
                        "now %(now)s). Reload it and make the change again."
                    ),
                    then=p.version,
                    now=row.version,
                )
                continue
            # The rules again, on the invoices as they are now (one may have been paid since).
            names = ["invoice" if name == "owner_id" else name for name in p.changes]
            target = targets.get(p.changes["owner_id"]) if "owner_id" in p.changes else None
            blocks = (
                # The reason is on the job's page for every viewer: customers' names masked.
                rules.move_blocks(row.invoice, target, customer=_masked_customer)
                if target is not None
                else []
            )
            if not p.override:
                blocks += rules.closed_blocks(row, names, target)
            if blocks:
                stale[item.id] = _("Not sent: %(errors)s") % {
                    "errors": " ".join(block.message for block in blocks)
                }
        return stale

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
        invoices_write(read for r in results for read in r.data["invoices"])
        for r in results:
            r.result = {"summary": self.payload(r.item).summary}
            if r.data["problems"]:
                note = _("Invoice totals not refreshed: %(errors)s") % {
                    "errors": " ".join(r.data["problems"])
                }
                r.message = f"{r.message} {note}".strip()


INVOICE_REFRESH_KIND = "wisecp.refresh"


@register
class InvoiceRefreshHandler(RefreshHandler):
    """Re-read an invoice with its items (GetInvoice); the item lists per record what changed,
    and items WiseCP no longer lists are removed from the mirror and reported as drift."""

    kind = INVOICE_REFRESH_KIND
    target_type = "billing.invoice"
    permission = "billing.sync_invoice"
    service = "wisecp"
    record_model = InvoiceItem

    def concurrency(self) -> int:
        return settings.WISECP_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> WiseCPClient:
        return WiseCPClient(recorder=recorder)

    def read(self, client: WiseCPClient, item: WorkItem) -> Any:
        read_at = timezone.now()
        return {"invoice": client.get_invoice(item.payload["wisecp_id"]), "read_at": read_at}

    def write(self, result: WorkResult) -> SyncCounts:
        counts = SyncCounts()
        invoice = Invoice.objects.get(pk=int(result.item.target_id))
        seen = invoice_upsert(result.data["invoice"], read_at=result.data["read_at"], counts=counts)
        delete_vanished({invoice.pk}, seen, counts)
        return counts
