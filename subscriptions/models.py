"""Mirror of Paynet subscriptions ("düzenli ödeme") and their payment records ("fatura").

Field names follow Paynet's (shared/upstreams/paynet.md); amounts are kept in lira as Decimal,
converted from Paynet's integer kuruş when synced.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from upstream.history.changes import HistoryModel
from upstream.lists.fold import Folded
from upstream.lists.indexes import TrigramIndex


class InvoiceStatus(models.IntegerChoices):
    # paynet.md §3: there is no value 1.
    WAITING = 0, _("Waiting")
    EXTERNAL_CHARGED = 2, _("Collected outside Paynet")
    DONE_SUCCEED = 3, _("Charged")
    DONE_UNSUCCEED = 4, _("Not charged")
    CANCEL = 5, _("Cancelled")
    DELETED = 6, _("Deleted")


class Interval(models.IntegerChoices):
    DAILY = 0, _("Daily")
    WEEKLY = 1, _("Weekly")
    MONTHLY = 2, _("Monthly")
    YEARLY = 3, _("Yearly")


class Subscription(HistoryModel):
    history_label = "reference_no"

    subscription_id = models.CharField(_("subscription id"), max_length=64, unique=True)
    reference_no = models.CharField(_("reference no"), max_length=64, db_index=True)
    name_surname = models.CharField(_("name surname"), max_length=200, blank=True)
    is_fixed_price = models.BooleanField(_("fixed price"), default=True)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2, default=0)
    agent_id = models.CharField(_("agent id"), max_length=64, blank=True)
    agent_amount = models.DecimalField(
        _("agent amount"), max_digits=14, decimal_places=2, default=0
    )
    company_amount = models.DecimalField(
        _("company amount"), max_digits=14, decimal_places=2, default=0
    )
    currency = models.CharField(_("currency"), max_length=3, default="TRY")
    interval = models.PositiveSmallIntegerField(
        _("interval"), choices=Interval.choices, null=True, blank=True
    )
    interval_count = models.PositiveIntegerField(_("number of charges"), null=True, blank=True)
    begin_date = models.DateTimeField(_("begin date"), null=True, blank=True)
    end_user_email = models.CharField(_("e-mail"), max_length=200, blank=True)
    end_user_gsm = models.CharField(_("mobile"), max_length=32, blank=True)
    # The same status table as the payment records' (paynet.md §3): shown by its label.
    status = models.PositiveSmallIntegerField(
        _("status"), choices=InvoiceStatus.choices, null=True, blank=True
    )
    created_date = models.DateTimeField(_("created at Paynet"), null=True, blank=True)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ["-created_date", "-id"]
        # The admin's and the API's list: its order, each filter with that order, the sortable
        # columns, the search (upstream.admin.lists).
        indexes = [
            models.Index(fields=["created_date", "id"], name="sub_created_id_idx"),
            models.Index(
                fields=["is_fixed_price", "created_date", "id"], name="sub_fixed_created_idx"
            ),
            models.Index(
                fields=["interval", "created_date", "id"], name="sub_interval_created_idx"
            ),
            models.Index(fields=["status", "created_date", "id"], name="sub_status_created_idx"),
            models.Index(fields=["name_surname", "id"], name="sub_name_id_idx"),
            TrigramIndex(Folded("name_surname"), name="sub_name_fold_trgm"),
            models.Index(fields=["end_user_email"], name="sub_email_idx"),
            models.Index(fields=["end_user_gsm"], name="sub_gsm_idx"),
        ]
        permissions = [
            (
                "push_subscription_invoices_status",
                _("Can change the status of all payment records of a subscription at Paynet"),
            ),
            ("push_create_invoice", _("Can create payment records at Paynet")),
            ("sync_subscription", _("Can refresh subscriptions from Paynet")),
        ]

    def __str__(self) -> str:
        return f"{self.reference_no} {self.name_surname}".strip()


class SubscriptionInvoice(HistoryModel):
    """One scheduled charge of a subscription; Paynet calls it an invoice."""

    history_label = "invoice_no"

    subscription = models.ForeignKey(
        Subscription,
        verbose_name=_("subscription"),
        on_delete=models.PROTECT,
        related_name="invoices",
    )
    invoice_id = models.CharField(_("invoice id"), max_length=64, unique=True)
    invoice_no = models.CharField(_("invoice no"), max_length=64, db_index=True)
    val_date = models.DateTimeField(_("charge date"), null=True, blank=True)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    agent_amount = models.DecimalField(
        _("agent amount"), max_digits=14, decimal_places=2, default=0
    )
    company_amount = models.DecimalField(
        _("company amount"), max_digits=14, decimal_places=2, default=0
    )
    currency = models.CharField(_("currency"), max_length=3, default="TRY")
    status = models.PositiveSmallIntegerField(_("status"), choices=InvoiceStatus.choices)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)

    class Meta:
        verbose_name = _("payment record")
        verbose_name_plural = _("payment records")
        ordering = ["-val_date", "-id"]
        indexes = [
            models.Index(fields=["val_date", "id"], name="subinv_val_date_id_idx"),
            models.Index(fields=["status", "val_date", "id"], name="subinv_status_val_date_idx"),
            models.Index(fields=["amount", "id"], name="subinv_amount_id_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "invoice_no"], name="subscriptioninvoice_unique_no"
            ),
        ]
        permissions = [
            ("push_invoice_status", _("Can change payment record status at Paynet")),
        ]

    def __str__(self) -> str:
        return self.invoice_no or self.invoice_id
