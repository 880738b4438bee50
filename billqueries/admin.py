from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from upstream.admin.filters import DateRangeFilter
from upstream.admin.lists import contains, exact
from upstream.admin.tools import (
    FormattedFieldsMixin,
    ReadOnlyListAdmin,
    RecordOperationsMixin,
    Repeated,
    error_text,
    launch_once,
    money_column,
    new_launch_token,
    repeated_answer,
    repeated_message,
    run_and_report,
    truncated,
    truncated_column,
)
from upstream.calls.errors import UpstreamError
from upstream.calls.log import DbCallRecorder
from upstream.l10n.formats import day, money

from . import exports, services
from .forms import BatchConfirmForm, BatchInputForm
from .models import BillDebt, BillQueryBatch, BillQueryLine, Institution
from .parsing import file_source, fold
from .sync import payofin_sync

LINES_PER_PAGE = 100
PREVIEW_SAMPLE = 50


@admin.register(Institution)
class InstitutionAdmin(ReadOnlyListAdmin):
    list_display = (
        "soot_code",
        "name",
        "invoice_type",
        "mask",
        "additional_no_required",
        "partial_amount",
        "active",
        "synced_at",
    )
    list_filter = ("invoice_type", "additional_no_required", "partial_amount", "active")
    search_fields = ("name", "=soot_code", "description")
    ordering = ("name",)
    actions = ["export_csv", "refresh_catalogue"]
    change_list_template = "admin/billqueries/institution/change_list.html"
    csv_fields = (
        "soot_code",
        "name",
        "invoice_type",
        "description",
        "field_title",
        "mask",
        "subscriber_required",
        "additional_no_required",
        "partial_amount",
        "active",
        "synced_at",
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            # "iski" finds "İSKİ": the database's case folding knows no Turkish (small table).
            key = fold(search_term)
            names = queryset.values_list("pk", "name")
            ids = [pk for pk, name in names if key in fold(name)]
            found = found | queryset.filter(pk__in=ids)
        return found, duplicates

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.PERM_SYNC)

    @admin.action(
        description=gettext_lazy("Refresh the catalogue from Payofin"), permissions=["sync"]
    )
    def refresh_catalogue(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._refresh(request)

    def _refresh(self, request: HttpRequest) -> None:
        try:
            counts = payofin_sync(recorder=DbCallRecorder(actor=request.user))
        except UpstreamError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(
            request,
            _(
                "Refreshed from Payofin: %(created)s created, %(updated)s updated, "
                "%(unchanged)s unchanged."
            )
            % {"created": counts.created, "updated": counts.updated, "unchanged": counts.unchanged},
            messages.SUCCESS,
        )

    def get_urls(self):
        return [
            path(
                "refresh/",
                self.admin_site.admin_view(self.refresh_view),
                name="billqueries_institution_refresh",
            ),
            *super().get_urls(),
        ]

    def refresh_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_sync_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._refresh(request)
        return HttpResponseRedirect(reverse("admin:billqueries_institution_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_sync": self.has_sync_permission(request)}
        return super().changelist_view(request, extra_context)


class BillDebtInline(FormattedFieldsMixin, admin.TabularInline):
    model = BillDebt
    fields = (
        "invoice_no",
        "customer_name",
        "exp_date_display",
        "invoice_amount_display",
        "merchant_profit_display",
        "total_amount_display",
        "invoice_query_id",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    invoice_amount_display = money_column("invoice_amount", description=gettext_lazy("debt"))
    merchant_profit_display = money_column(
        "merchant_profit", description=gettext_lazy("service fee")
    )
    total_amount_display = money_column("total_amount", description=gettext_lazy("to pay"))

    @admin.display(description=gettext_lazy("due date"), ordering="exp_date")
    def exp_date_display(self, obj: BillDebt) -> str:
        if obj.exp_date is None:
            return "—"
        if obj.is_overdue:
            return format_html(
                '{} <span class="overdue-label">{}</span>',
                day(obj.exp_date),
                _("overdue"),
            )
        return day(obj.exp_date)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BillQueryLine)
class BillQueryLineAdmin(RecordOperationsMixin, ReadOnlyListAdmin):
    change_form_template = "admin/upstream/record_change_form.html"

    @admin.display(description=gettext_lazy("line"), ordering="position")
    def line_number_display(self, obj: BillQueryLine) -> int:
        return obj.line_number

    result_message_column = truncated_column("result_message", gettext_lazy("result message"))

    @admin.display(description=gettext_lazy("institution"))
    def institution_column(self, obj: BillQueryLine) -> str:
        return truncated(obj.institution)

    list_display = (
        "batch_link",
        "line_number_display",
        "institution_column",
        "subscriber_no",
        "outcome",
        "result_code",
        "result_message_column",
        "debt_count",
        "debt_total_display",
    )
    # The institutions come from their catalogue, not from a DISTINCT over the lines.
    list_filter = ("outcome", "state", ("institution", admin.RelatedFieldListFilter))
    search_matches = (
        exact("subscriber_no"),
        exact("firm_ref_no"),
        exact("batch_id"),
        exact("debts__invoice_no"),
    )
    search_help_text = gettext_lazy(
        "Subscriber no, firm reference no, batch no or bill number: exact match."
    )
    # Newest batch first, its lines in order (the line_batch_desc_pos_idx index).
    ordering = ("-batch_id", "position")
    sortable_by = ("subscriber_no",)
    list_select_related = ("institution", "batch")
    inlines = [BillDebtInline]
    csv_fields = (
        "batch",
        "input_line",
        "soot_code",
        "institution__name",
        "subscriber_no",
        "additional_no",
        "firm_ref_no",
        "outcome",
        "result_code",
        "result_message",
        "debt_count",
        "debt_total",
        "queried_at",
    )
    fields = (
        ("batch", "line_number_display", "attempt"),
        ("institution", "soot_code"),
        ("subscriber_no", "additional_no", "firm_ref_no"),
        ("state", "outcome", "queried_at"),
        ("result", "result_code"),
        "result_message",
        ("debt_count", "debt_total", "fee_total"),
        "call_link",
    )
    readonly_fields = (
        "batch",
        "line_number_display",
        "attempt",
        "institution",
        "soot_code",
        "subscriber_no",
        "additional_no",
        "firm_ref_no",
        "state",
        "outcome",
        "queried_at",
        "result",
        "result_code",
        "result_message",
        "debt_count",
        "debt_total",
        "fee_total",
        "call_link",
    )
    debt_total_display = money_column("debt_total", description=gettext_lazy("total debt"))

    @admin.display(description=gettext_lazy("batch"), ordering="batch")
    def batch_link(self, obj: BillQueryLine) -> str:
        url = reverse("admin:billqueries_billquerybatch_change", args=[obj.batch_id])
        return format_html('<a href="{}">#{}</a>', url, obj.batch_id)

    @admin.display(description=gettext_lazy("upstream call"))
    def call_link(self, obj: BillQueryLine) -> str:
        call_id = obj.job_item.call_id if obj.job_item_id else None
        if not call_id:
            return "—"
        url = reverse("admin:upstream_upstreamcall_change", args=[call_id])
        return format_html('<a href="{}">#{}</a>', url, call_id)


@admin.register(BillQueryBatch)
class BillQueryBatchAdmin(ReadOnlyListAdmin):
    list_display = (
        "id",
        "created_at",
        "created_by",
        "source",
        "state",
        "progress",
        "found_count",
        "no_debt_count",
        "failed_count",
        "debt_total_display",
    )
    list_filter = ("state", "source", ("created_at", DateRangeFilter))
    search_matches = (exact("id"), exact("created_by__username"), contains("filename"))
    search_help_text = gettext_lazy(
        "Batch no or user name: exact match; file name: contains (words of at least 3 letters)."
    )
    sortable_by = ("id", "created_at")
    actions = ["export_csv"]
    csv_fields = (
        "id",
        "created_at",
        "created_by__username",
        "source",
        "filename",
        "state",
        "line_count",
        "found_count",
        "no_debt_count",
        "failed_count",
        "debt_total",
        "finished_at",
    )
    list_select_related = ("created_by",)
    debt_total_display = money_column("debt_total", description=gettext_lazy("total debt"))

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, obj: BillQueryBatch) -> str:
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{}',
            obj.line_count or 1,
            obj.done_count,
            obj.done_count,
            obj.line_count,
        )

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        # Adding a batch runs it: the push permission, not Django's add_ permission.
        return request.user.has_perm(services.PERM_RUN)

    def get_urls(self):
        info = "billqueries_billquerybatch"
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/progress.json", view(self.progress_json), name=f"{info}_progress"),
            path("<int:pk>/export.csv", view(self.export_csv_view), name=f"{info}_export_csv"),
            path("<int:pk>/export.xlsx", view(self.export_xlsx_view), name=f"{info}_export_xlsx"),
            path("<int:pk>/rerun/", view(self.rerun_view), name=f"{info}_rerun"),
            *super().get_urls(),
        ]

    # Add: form -> preview -> confirm ----------------------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        step = request.POST.get("step") if request.method == "POST" else None
        if step == "confirm":
            return self._confirm(request)
        form = (
            BatchInputForm(request.POST, request.FILES) if step == "preview" else BatchInputForm()
        )
        if form.is_bound and form.is_valid():
            upload = form.cleaned_data["upload"]
            try:
                if upload is not None:
                    source, filename = file_source(upload.name, upload.read(4)), upload.name
                    upload.seek(0)
                else:
                    source = form.cleaned_data["text_source"] or BillQueryBatch.Source.TYPED
                    filename = ""
                valid, invalid = services.bill_query_batch_preview(
                    text=form.cleaned_data["text"], file=upload
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                return self._preview_page(request, valid, invalid, source, filename)
        return self._input_page(request, form)

    def _confirm(self, request: HttpRequest) -> HttpResponse:
        confirm = BatchConfirmForm(request.POST)
        if not confirm.is_valid():
            self.message_user(request, " ".join(confirm.errors["lines"]), messages.ERROR)
            return self._input_page(request, BatchInputForm())
        data = confirm.cleaned_data["lines"]
        try:
            # Once per confirmation (its one-time token): a double click queries once.
            batch = launch_once(
                request,
                lambda: services.bill_query_batch_create(
                    lines=data["lines"],
                    actor=request.user,
                    source=data["source"],
                    filename=data["filename"],
                ),
            )
        except services.InvalidLines as error:
            # The catalogue changed since the preview: show what no longer passes.
            return self._preview_page(
                request, [], error.invalid, data["source"], data["filename"], error.messages[0]
            )
        except (ValidationError, PermissionDenied) as error:
            self.message_user(request, error_text(error), messages.ERROR)
            return self._input_page(request, BatchInputForm())
        if isinstance(batch, Repeated):
            return self._repeated(request, batch)
        self.message_user(
            request,
            _("Batch #%(id)s queued: %(count)s lines go to Payofin.")
            % {"id": batch.pk, "count": batch.line_count},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:billqueries_billquerybatch_change", args=[batch.pk])
        )

    def _repeated(self, request: HttpRequest, repeat: Repeated) -> HttpResponse:
        """The same confirmation again: the batch the first one queued, not a second batch."""
        first = BillQueryBatch.objects.filter(job__in=repeat.jobs).order_by("pk").first()
        if first is None:
            return repeated_answer(self, request, repeat)
        self.message_user(request, repeated_message(repeat), messages.WARNING)
        return HttpResponseRedirect(
            reverse("admin:billqueries_billquerybatch_change", args=[first.pk])
        )

    def _input_page(self, request: HttpRequest, form: BatchInputForm) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": _("New bill query batch"),
            "opts": self.opts,
            "form": form,
            "institutions": Institution.objects.filter(active=True).order_by("name"),
        }
        return TemplateResponse(request, "admin/billqueries/billquerybatch/add.html", context)

    def _preview_page(self, request, valid, invalid, source, filename, error: str = ""):
        context = {
            **self.admin_site.each_context(request),
            "title": _("Check the lines before they are sent"),
            "opts": self.opts,
            "valid_count": len(valid),
            "invalid": invalid,
            "sample": valid[:PREVIEW_SAMPLE],
            "more": max(len(valid) - PREVIEW_SAMPLE, 0),
            "requests": -(-len(valid) // 15),
            "source_label": BillQueryBatch.Source(source).label,
            "filename": filename,
            "error": error,
            "launch_token": new_launch_token(),
            "confirm": BatchConfirmForm(
                initial={
                    "lines": BatchConfirmForm.sign([v.as_dict() for v in valid], source, filename)
                }
            )
            if valid and not error
            else None,
        }
        return TemplateResponse(request, "admin/billqueries/billquerybatch/preview.html", context)

    # The batch page ---------------------------------------------------------------------------

    def _batch(self, request: HttpRequest, pk) -> BillQueryBatch:
        batch = get_object_or_404(BillQueryBatch.objects.select_related("job", "created_by"), pk=pk)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        return batch

    def _lines(self, request: HttpRequest, batch: BillQueryBatch) -> QuerySet[BillQueryLine]:
        lines = batch.lines.all()
        outcome = request.GET.get("outcome")
        if outcome in BillQueryLine.Outcome.values:
            lines = lines.filter(outcome=outcome)
        soot = request.GET.get("soot_code", "")
        if soot.isdigit():
            lines = lines.filter(soot_code=int(soot))
        return lines

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        batch = self._batch(request, object_id)
        lines = self._lines(request, batch).select_related("institution").order_by("position")
        page = Paginator(lines.prefetch_related("debts"), LINES_PER_PAGE).get_page(
            request.GET.get("page")
        )
        institutions = (
            Institution.objects.filter(soot_code__in=batch.lines.values("soot_code"))
            .order_by("name")
            .only("soot_code", "name")
        )
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self.admin_site.each_context(request),
            "title": str(batch),
            "opts": self.opts,
            "original": batch,
            "batch": batch,
            "job": batch.job,
            "page": page,
            "filter_query": query.urlencode(),
            "outcome_choices": [c for c in BillQueryLine.Outcome.choices if c[0]],
            "institutions": institutions,
            "current_outcome": request.GET.get("outcome", ""),
            "current_soot": request.GET.get("soot_code", ""),
            "debt_total": money(batch.debt_total),
            "fee_total": money(batch.fee_total),
            "payable_total": money(batch.payable_total),
            "can_run": request.user.has_perm(services.PERM_RUN),
            "launch_token": new_launch_token(),
            "has_view_permission": True,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/billqueries/billquerybatch/batch.html", context)

    def progress_json(self, request: HttpRequest, pk: int) -> JsonResponse:
        batch = self._batch(request, pk)
        return JsonResponse(
            {
                "id": batch.pk,
                "state": batch.state,
                "state_label": batch.get_state_display(),
                "lines": batch.line_count,
                "done": batch.done_count,
                "found": batch.found_count,
                "no_debt": batch.no_debt_count,
                "failed": batch.failed_count,
                "debt_total": money(batch.debt_total),
                "fee_total": money(batch.fee_total),
                "payable_total": money(batch.payable_total),
                "percent": batch.percent,
                "finished": batch.is_finished,
            }
        )

    def export_csv_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        batch = self._batch(request, pk)
        return exports.batch_csv(batch, self._lines(request, batch))

    def export_xlsx_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        batch = self._batch(request, pk)
        return exports.batch_xlsx(batch, self._lines(request, batch))

    def rerun_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        batch = self._batch(request, pk)
        if request.method == "POST":
            run_and_report(
                self,
                request,
                # Once per page (its one-time token): a double click re-runs the lines once.
                lambda: launch_once(
                    request, lambda: services.bill_query_batch_rerun_failed(batch, request.user)
                ),
                _("The failed lines are queued again."),
            )
        return HttpResponseRedirect(
            reverse("admin:billqueries_billquerybatch_change", args=[batch.pk])
        )
