"""Mirror of Payofin's institution catalogue ("soot") and the bill-debt queries we ran there.

Field names follow Payofin's (shared/upstreams/payofin.md). Amounts are lira as Decimal, as
Payofin sends them (§3). A line belongs to one batch and is never reused: querying the same
subscriber again makes a new line in a new batch, so every earlier answer stays as it was.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from upstream.history.changes import HistoryModel
from upstream.lists.fold import Folded
from upstream.lists.indexes import TrigramIndex


class Institution(models.Model):
    """One institution of `sootlist`, with the input rules of its subscriber number."""

    soot_code = models.IntegerField(_("institution code"), unique=True)
    name = models.CharField(_("name"), max_length=200)
    invoice_type = models.CharField(_("bill type"), max_length=100, blank=True, db_index=True)
    description = models.TextField(_("description"), blank=True)
    field_title = models.CharField(_("subscriber number label"), max_length=100, blank=True)
    field_description = models.TextField(_("subscriber number help"), blank=True)
    # Payofin's `fields.mask`; the syntax is payofin.md §9 assumption 16 (see masks.py).
    mask = models.CharField(_("mask"), max_length=100, blank=True)
    subscriber_required = models.BooleanField(_("subscriber number required"), default=True)
    additional_no_required = models.BooleanField(_("additional number required"), default=False)
    partial_amount = models.BooleanField(_("partial payment"), default=False)
    # False once the institution is missing from Payofin's list; kept for the lines that use it.
    active = models.BooleanField(_("listed by Payofin"), default=True)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)

    class Meta:
        verbose_name = _("institution")
        verbose_name_plural = _("institutions")
        ordering = ["name", "soot_code"]
        permissions = [("sync_institution", _("Can refresh the institution catalogue"))]

    def __str__(self) -> str:
        return f"{self.name} ({self.soot_code})"


class BillQueryBatch(models.Model):
    """Lines queried together: typed, pasted or uploaded at once, run as one job."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        FAILED = "failed", _("Failed")

    class Source(models.TextChoices):
        TYPED = "typed", _("Typed")
        PASTED = "pasted", _("Pasted")
        CSV = "csv", _("CSV file")
        XLSX = "xlsx", _("Excel file")
        API = "api", _("API")

    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.QUEUED)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices)
    filename = models.CharField(_("file name"), max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # The job of the latest run (the first run, or a re-run of the failed lines).
    job = models.ForeignKey(
        "upstream.Job",
        verbose_name=_("job"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # Recounted from the lines after every write (services.batch_recount), never edited.
    line_count = models.PositiveIntegerField(_("lines"), default=0)
    found_count = models.PositiveIntegerField(pgettext_lazy("bill query lines", "found"), default=0)
    no_debt_count = models.PositiveIntegerField(_("no debt"), default=0)
    failed_count = models.PositiveIntegerField(_("failed"), default=0)
    debt_count = models.PositiveIntegerField(_("bills"), default=0)
    # The bills' own amounts; Payofin adds its service fee to each bill (BillDebt.total_amount
    # is the two together), so a page shows the debt, the fees and their sum apart.
    debt_total = models.DecimalField(_("total debt"), max_digits=16, decimal_places=2, default=0)
    fee_total = models.DecimalField(_("service fees"), max_digits=16, decimal_places=2, default=0)

    class Meta:
        verbose_name = _("bill query batch")
        verbose_name_plural = _("bill query batches")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "created_at", "id"], name="batch_state_created_idx"),
            models.Index(fields=["source", "created_at", "id"], name="batch_source_created_idx"),
            # The search by file name ("içinde geçen", Turkish-case folded): a rare name is
            # found through the index instead of folding every batch's name (issue 20).
            TrigramIndex(Folded("filename"), name="batch_filename_fold_trgm"),
        ]
        permissions = [("run_billquery", _("Can run bill queries at Payofin"))]

    def __str__(self) -> str:
        return _("Bill query batch #%(id)s") % {"id": self.pk}

    @property
    def payable_total(self) -> Decimal:
        """What paying every bill found costs: the debt and the service fees."""
        return self.debt_total + self.fee_total

    @property
    def done_count(self) -> int:
        return self.found_count + self.no_debt_count + self.failed_count

    @property
    def pending_count(self) -> int:
        return max(self.line_count - self.done_count, 0)

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.FINISHED, self.State.FAILED)

    @property
    def percent(self) -> int:
        return int(100 * self.done_count / self.line_count) if self.line_count else 100


class BillQueryLine(HistoryModel):
    """One subscriber number queried at Payofin, with Payofin's answer for it."""

    history_label = "firm_ref_no"
    # Our bookkeeping around a query, not Payofin's answer: the change rows already say when
    # (`at`) and through which job and call; three rows more per line cost the flush a third.
    history_exclude = ("state", "queried_at", "job_item")

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        DONE = "done", _("Done")

    class Outcome(models.TextChoices):
        NONE = "", _("—")
        FOUND = "found", _("Debt found")
        NO_DEBT = "no_debt", _("No debt")
        FAILED = "failed", _("Failed")

    batch = models.ForeignKey(
        BillQueryBatch, verbose_name=_("batch"), on_delete=models.CASCADE, related_name="lines"
    )
    position = models.PositiveIntegerField(_("position"))
    # The line (or row) number in what staff gave us: blank lines, a header or invalid lines
    # make it differ from the position. Empty for lines stored before it was kept.
    input_line = models.PositiveIntegerField(_("line"), null=True, blank=True)
    institution = models.ForeignKey(
        Institution, verbose_name=_("institution"), on_delete=models.PROTECT, related_name="+"
    )
    soot_code = models.IntegerField(_("institution code"))
    subscriber_no = models.CharField(_("subscriber no"), max_length=64, db_index=True)
    additional_no = models.CharField(_("additional no"), max_length=64, blank=True)
    # Our reference for the query; new on every attempt (≤ 15 characters, payofin.md §4).
    firm_ref_no = models.CharField(_("firm reference no"), max_length=15, unique=True)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.PENDING
    )
    result = models.BooleanField(_("result"), null=True, blank=True)
    result_code = models.IntegerField(_("result code"), null=True, blank=True)
    result_message = models.TextField(_("result message"), blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=10, choices=Outcome.choices, default=Outcome.NONE, blank=True
    )
    queried_at = models.DateTimeField(_("queried at"), null=True, blank=True)
    debt_count = models.PositiveSmallIntegerField(_("bills"), default=0)
    debt_total = models.DecimalField(_("total debt"), max_digits=14, decimal_places=2, default=0)
    fee_total = models.DecimalField(_("service fees"), max_digits=14, decimal_places=2, default=0)
    # The job item (chunk of ≤ 15 lines) that carried the last query; its call is the evidence.
    job_item = models.ForeignKey(
        "upstream.JobItem",
        verbose_name=_("job item"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        verbose_name = _("bill query line")
        verbose_name_plural = _("bill query lines")
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "position"], name="billqueryline_unique_position"
            ),
        ]
        indexes = [
            models.Index(fields=["batch", "outcome"]),
            models.Index(fields=["soot_code", "subscriber_no"]),
            # The admin's list: newest batch first, lines in order, and each filter with that
            # order (upstream.admin.lists).
            models.Index(fields=["-batch", "position"], name="line_batch_desc_pos_idx"),
            models.Index(fields=["outcome", "-batch", "position"], name="line_outcome_batch_idx"),
            models.Index(fields=["state", "-batch", "position"], name="line_state_batch_idx"),
            models.Index(fields=["institution", "-batch", "position"], name="line_inst_batch_idx"),
            # The dashboard's lines per day (billqueries.dashboard), read from the index alone.
            models.Index(fields=["queried_at", "outcome"], name="line_queried_outcome_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.soot_code}/{self.subscriber_no}"

    @property
    def payable_total(self) -> Decimal:
        """What paying every bill found costs: the debt and the service fees."""
        return self.debt_total + self.fee_total

    @property
    def line_number(self) -> int:
        """The number staff gave the line (its position for lines stored before)."""
        return self.input_line or self.position


class BillDebt(models.Model):
    """One open bill Payofin found for a line (an element of `invoiceList`)."""

    line = models.ForeignKey(
        BillQueryLine, verbose_name=_("line"), on_delete=models.CASCADE, related_name="debts"
    )
    # The handle needed to pay the bill; issued fresh by every query (§9 assumption 9).
    invoice_query_id = models.BigIntegerField(_("invoice query id"), db_index=True)
    subscriber_no = models.CharField(_("subscriber no"), max_length=64)
    customer_name = models.CharField(_("customer name (masked)"), max_length=200, blank=True)
    invoice_no = models.CharField(_("invoice no"), max_length=64, blank=True)
    exp_date = models.DateField(_("due date"), null=True, blank=True)
    invoice_amount = models.DecimalField(_("invoice amount"), max_digits=14, decimal_places=2)
    merchant_profit = models.DecimalField(
        _("service fee"), max_digits=14, decimal_places=2, default=0
    )
    total_amount = models.DecimalField(_("total amount"), max_digits=14, decimal_places=2)
    soot_code = models.IntegerField(_("institution code"))

    class Meta:
        verbose_name = _("bill debt")
        verbose_name_plural = _("bill debts")
        ordering = ["line", "exp_date", "id"]
        # The lines' search by bill number.
        indexes = [models.Index(fields=["invoice_no"], name="debt_invoice_no_idx")]

    def __str__(self) -> str:
        return f"{self.invoice_no} ({self.total_amount})"

    @property
    def is_overdue(self) -> bool:
        """Its due date has passed (in Istanbul): shown highlighted."""
        from django.utils import timezone

        return self.exp_date is not None and self.exp_date < timezone.localdate()
