"""Mirror of WiseCP invoices and their items (shared/upstreams/wisecp.md §4, §6.1).

Upstream ids are kept as `wisecp_id`; money is Decimal with 2 places (the upstream prints binary
float noise, §3); dates are aware datetimes read in Europe/Istanbul, and the zero date is None.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F
from django.utils.translation import gettext_lazy as _

from upstream.history.changes import HistoryModel
from upstream.lists.fold import Folded
from upstream.lists.indexes import TrigramIndex


class InvoiceStatus(models.TextChoices):
    # Legacy API values (wisecp.md §6.3).
    UNPAID = "unpaid", _("Unpaid")
    PENDING = "pending", _("Pending")
    PAID = "paid", _("Paid")
    REFUNDED = "refunded", _("Refunded")
    CANCELLED = "cancelled", _("Cancelled")


class TaxationType(models.TextChoices):
    # wisecp.md §5: "exclusive" seen, "inclusive" presumed.
    EXCLUSIVE = "exclusive", _("Tax added to the prices")
    INCLUSIVE = "inclusive", _("Tax included in the prices")


class Invoice(HistoryModel):
    history_label = "number"

    wisecp_id = models.PositiveIntegerField(_("WiseCP id"), unique=True)
    number = models.CharField(_("number"), max_length=64, db_index=True)
    status = models.CharField(_("status"), max_length=16, choices=InvoiceStatus.choices)
    currency = models.CharField(_("currency"), max_length=3, default="TRY")
    subtotal = models.DecimalField(_("subtotal"), max_digits=14, decimal_places=2, default=0)
    tax = models.DecimalField(_("tax"), max_digits=14, decimal_places=2, default=0)
    total = models.DecimalField(_("total"), max_digits=14, decimal_places=2, default=0)
    tax_rate = models.DecimalField(_("tax rate (%)"), max_digits=6, decimal_places=2, default=0)
    taxfree = models.BooleanField(_("tax free"), default=False)
    taxation_type = models.CharField(
        _("taxation type"), max_length=16, blank=True, choices=TaxationType.choices
    )
    created_at_upstream = models.DateTimeField(_("created at WiseCP"), null=True, blank=True)
    due_date = models.DateTimeField(_("due date"), null=True, blank=True)
    payment_date = models.DateTimeField(_("payment date"), null=True, blank=True)
    refund_date = models.DateTimeField(_("refund date"), null=True, blank=True)
    # The customer as the invoice snapshots it (wisecp.md §5.4): WiseCP's user id and names.
    user_id = models.PositiveIntegerField(_("WiseCP customer id"), null=True, blank=True)
    full_name = models.CharField(_("customer"), max_length=200, blank=True)
    company_name = models.CharField(_("company"), max_length=200, blank=True)
    # The names as a search compares them (upstream.lists.fold), kept by the database on every
    # write: a customer search on SQLite (no trigram index) tests every invoice, ~20 times
    # faster against these than against LOWER and twelve REPLACEs of the name (issue 20).
    full_name_folded = models.GeneratedField(
        expression=Folded("full_name"), output_field=models.TextField(), db_persist=True
    )
    company_name_folded = models.GeneratedField(
        expression=Folded("company_name"), output_field=models.TextField(), db_persist=True
    )
    # The moment of the upstream read this row was written from; an older read never overwrites.
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-created_at_upstream", "-id"]
        indexes = [
            models.Index(fields=["user_id"], name="billing_inv_user_id_idx"),
            # The admin's list: its order, each filter with that order, the sortable columns,
            # the customer search (upstream.admin.lists).
            models.Index(fields=["created_at_upstream", "id"], name="inv_created_id_idx"),
            models.Index(
                fields=["status", "created_at_upstream", "id"], name="inv_status_created_idx"
            ),
            models.Index(
                fields=["currency", "created_at_upstream", "id"], name="inv_currency_created_idx"
            ),
            models.Index(fields=["due_date", "id"], name="inv_due_date_id_idx"),
            TrigramIndex(F("full_name_folded"), name="inv_full_name_folded_trgm"),
            TrigramIndex(F("company_name_folded"), name="inv_company_folded_trgm"),
        ]
        permissions = [
            ("sync_invoice", _("Can refresh invoices from WiseCP")),
        ]

    def __str__(self) -> str:
        return self.number or f"#{self.wisecp_id}"

    @property
    def customer(self) -> str:
        return self.company_name or self.full_name


class InvoiceItem(HistoryModel):
    history_label = "wisecp_id"

    wisecp_id = models.PositiveIntegerField(_("WiseCP id"), unique=True)
    invoice = models.ForeignKey(
        Invoice, verbose_name=_("invoice"), on_delete=models.PROTECT, related_name="items"
    )
    sequence = models.IntegerField(_("sequence"), default=0)
    description = models.TextField(_("description"))
    # The description as a search compares it (upstream.lists.fold), kept by the database on
    # every write. A common word's capped count rechecks 10,000 rows: against this column in a
    # few ms, against TRANSLATE(description, ...) in about 500 ms (decision 019, issue 20).
    description_folded = models.GeneratedField(
        expression=Folded("description"), output_field=models.TextField(), db_persist=True
    )
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    tax_exempt = models.BooleanField(_("tax exempt"), default=False)
    amount = models.DecimalField(_("unit price"), max_digits=14, decimal_places=2)
    total = models.DecimalField(_("total"), max_digits=14, decimal_places=2)
    order_id = models.PositiveIntegerField(
        _("linked service id"), default=0, help_text=_("0 = not linked to a service.")
    )
    due_date = models.DateTimeField(_("due date"), null=True, blank=True)
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)
    # Local only. `version` grows with every write to the row, so a form opened on an older
    # version is refused instead of overwriting a change it never saw. A save in flight holds
    # the item's record claim (upstream.pushes.claims).
    version = models.PositiveIntegerField(_("version"), default=1)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)

    class Meta:
        verbose_name = _("invoice item")
        verbose_name_plural = _("invoice items")
        ordering = ["-wisecp_id"]
        indexes = [
            models.Index(fields=["invoice", "sequence"], name="billing_item_inv_seq_idx"),
            # The admin's and the API's list (ordered by wisecp_id, which is unique): filters,
            # sortable columns, the description search (upstream.admin.lists).
            models.Index(fields=["tax_exempt", "wisecp_id"], name="item_tax_exempt_idx"),
            models.Index(fields=["due_date", "id"], name="item_due_date_id_idx"),
            models.Index(fields=["order_id"], name="item_order_id_idx"),
            TrigramIndex(F("description_folded"), name="item_descr_folded_trgm"),
        ]
        permissions = [
            ("push_invoiceitem", _("Can push invoice item changes to WiseCP")),
            (
                "override_closed_invoice",
                _("Can change the money of items on paid, cancelled or refunded invoices"),
            ),
        ]

    def __str__(self) -> str:
        text = self.description if len(self.description) <= 60 else self.description[:59] + "…"
        return f"{text} (#{self.wisecp_id})"
