from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from security.personal import sees_personal_data
from upstream.admin.filters import DateRangeFilter, InputFilter, catalogue_filter
from upstream.admin.lists import contains, exact
from upstream.admin.tools import (
    FormattedFieldsMixin,
    ReadOnlyListAdmin,
    RecordOperationsMixin,
    confirm_then_start,
    form_add_errors,
    in_doubt_message,
    money_column,
    pretty_json,
    start_job,
    truncated,
)
from upstream.calls.errors import (
    AwaitingApproval,
    PushConflict,
    PushFailed,
    PushInDoubt,
    UpstreamError,
)
from upstream.l10n.formats import day, money
from upstream.lists.fold import folded_contains, folded_equals
from upstream.lists.queries import related_count
from upstream.models import Job
from upstream.pushes.claims import claim_holder

from . import services
from .forms import BulkActionForm, DueDateForm, InvoiceItemEditForm, MoveForm, RenumberForm
from .models import Invoice, InvoiceItem
from .pushes import PERM_OVERRIDE_CLOSED


def item_money(field: str, description: str):
    """A ₺/$/€ column for an item; the currency is its invoice's (items carry none)."""

    @admin.display(description=description, ordering=field)
    def column(*args: InvoiceItem) -> str:
        # Assigned as a ModelAdmin attribute it is bound, so it gets (modeladmin, obj).
        obj = args[-1]
        return format_html(
            '<span class="money">{}</span>', money(getattr(obj, field), obj.invoice.currency)
        )

    return column


def _shown(name: str, value, currency: str) -> str:
    """A value of an item field as the confirmation page shows it."""
    if name in ("amount", "total"):
        return money(value, currency)
    if name == "due_date":
        return day(value) or "—"
    if name == "tax_exempt":
        return _("Yes") if value else _("No")
    if name == "invoice":
        return f"{value} · {value.customer} · {value.currency} · {value.get_status_display()}"
    if name == "attributes":
        return pretty_json(value)
    return str(value)


def edit_preview_rows(item: InvoiceItem, preview: services.ItemPreview) -> dict:
    """The confirmation page's tables: old → new per field, the line total, invoice totals."""
    currency = item.invoice.currency
    return {
        "rows": [
            {
                "name": name,
                "label": InvoiceItem._meta.get_field(name).verbose_name,
                "old": _shown(name, old, currency),
                "new": _shown(name, new, currency),
            }
            for name, old, new in preview.rows
        ],
        "total": money(preview.total, currency),
        "note": preview.note,
        "invoices": [
            {
                "invoice": estimate.invoice,
                "rows": [
                    (
                        label,
                        money(getattr(estimate.now, key), estimate.invoice.currency),
                        money(getattr(estimate.after, key), estimate.invoice.currency),
                    )
                    for key, label in (
                        ("subtotal", _("Subtotal")),
                        ("tax", _("Tax")),
                        ("total", _("Total")),
                    )
                ],
            }
            for estimate in preview.invoices
        ],
    }


# The currencies WiseCP invoices come in (wisecp.md §3): the currency filters offer these.
CURRENCIES = ("TRY", "USD", "EUR", "GBP")


def _currencies() -> list[tuple[str, str]]:
    return [(code, code) for code in CURRENCIES]


def _numbers(term: str) -> set[str]:
    """WiseCP shows invoice numbers as "#302"; staff type "302" or "#302"."""
    return {term, "#" + term.removeprefix("#")}


class InvoiceStatusFilter(admin.ChoicesFieldListFilter):
    """The items' list filters by their invoice's status, and says so ("Fatura durumuna göre"):
    an item has no status of its own. The stock choices filter, its parameter unchanged."""

    title = gettext_lazy("invoice status")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = type(self).title


class CustomerFilter(InputFilter):
    """Customer name, company or WiseCP customer id."""

    title = gettext_lazy("customer")
    parameter_name = "customer"
    prefix = ""
    whole_name = True

    def queryset(self, request, queryset):
        # Without the permission a name is matched whole: a part would spell the masked name out.
        self.whole_name = not sees_personal_data(request.user)
        return super().queryset(request, queryset)

    def filter_value(self, queryset, value):
        p = self.prefix
        by_name = folded_equals if self.whole_name else folded_contains
        # The list's model, so the invoice's stored folds of the names are compared.
        model = queryset.model
        query = by_name(f"{p}full_name", value, model) | folded_contains(
            f"{p}company_name", value, model
        )
        if value.isdigit():
            query |= Q(**{f"{p}user_id": int(value)})
        return queryset.filter(query)


class ItemCustomerFilter(CustomerFilter):
    prefix = "invoice__"


class InvoiceNumberFilter(InputFilter):
    title = gettext_lazy("invoice number")
    parameter_name = "invoice_number"

    def filter_value(self, queryset, value):
        digits = value.lstrip("#")
        query = Q(invoice__number=value) | Q(invoice__number=f"#{digits}")
        if digits.isdigit():
            query |= Q(invoice__wisecp_id=int(digits))
        return queryset.filter(query)


class InvoiceItemInline(FormattedFieldsMixin, admin.TabularInline):
    model = InvoiceItem
    fields = (
        "sequence",
        "description",
        "quantity",
        "amount_display",
        "total_display",
        "tax_exempt",
        "due_date",
        "order_id",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("sequence", "wisecp_id")
    amount_display = item_money("amount", gettext_lazy("unit price"))
    total_display = item_money("total", gettext_lazy("total"))

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(RecordOperationsMixin, ReadOnlyListAdmin):
    change_form_template = "admin/upstream/record_change_form.html"
    # Fits 1366 px beside the filters; the WiseCP id, subtotal, tax and sync time are on the
    # invoice's page (the id is searchable).
    list_display = (
        "number",
        "customer",
        "status",
        "created_at_upstream",
        "due_date",
        "total_display",
        "item_count",
    )
    list_filter = (
        "status",
        ("created_at_upstream", DateRangeFilter),
        ("due_date", DateRangeFilter),
        catalogue_filter("currency", gettext_lazy("currency"), _currencies),
        CustomerFilter,
    )
    search_matches = (
        exact("number", spellings=_numbers),
        exact("wisecp_id"),
        contains("full_name"),
        contains("company_name"),
    )
    # Not the items' descriptions: a product name is on a great many items, and finding their
    # invoices reads all of them. The item list searches descriptions and shows the invoice.
    search_help_text = gettext_lazy(
        "Invoice number or WiseCP id: exact match; customer or company: contains (words of at "
        "least 3 letters)."
    )
    sortable_by = ("number", "wisecp_id", "created_at_upstream", "due_date")
    # A due-date range is read through its (due_date, id) index and sorted (decision 019).
    list_sort_filtered = ("due_date",)
    # Explicit, so the item edit's autocomplete pages a grouped (annotated) queryset in order.
    ordering = ("-created_at_upstream", "-id")
    actions = ["export_csv", "refresh_from_wisecp"]
    inlines = [InvoiceItemInline]
    list_per_page = 50
    list_max_show_all = 500
    csv_fields = (
        "wisecp_id",
        "number",
        "status",
        "currency",
        "subtotal",
        "tax",
        "total",
        "tax_rate",
        "taxfree",
        "created_at_upstream",
        "due_date",
        "payment_date",
        "refund_date",
        "user_id",
        "full_name",
        "company_name",
    )
    subtotal_display = money_column(
        "subtotal", currency_field="currency", description=gettext_lazy("subtotal")
    )
    tax_display = money_column("tax", currency_field="currency", description=gettext_lazy("tax"))
    total_display = money_column(
        "total", currency_field="currency", description=gettext_lazy("total")
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        items = related_count(InvoiceItem, "invoice")
        return super().get_queryset(request).annotate(item_total=items)

    @admin.display(description=gettext_lazy("customer"), ordering="full_name")
    def customer(self, obj: Invoice) -> str:
        return truncated(obj.customer)

    @admin.display(description=gettext_lazy("items"))
    def item_count(self, obj: Invoice) -> int:
        return obj.item_total

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.PERM_SYNC)

    @admin.action(description=gettext_lazy("Refresh from WiseCP"), permissions=["sync"])
    def refresh_from_wisecp(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # A job: its page lists per record what changed (and the items WiseCP no longer lists).
        return start_job(
            self,
            request,
            lambda: services.invoice_refresh_start(invoices=queryset, actor=request.user),
        )


@admin.register(InvoiceItem)
class InvoiceItemAdmin(RecordOperationsMixin, ReadOnlyListAdmin):
    # Fits 1366 px beside the filters; the sequence, tax exemption, linked service and sync
    # time are on the item's page.
    list_display = (
        "wisecp_id",
        "short_description",
        "invoice_link",
        "customer",
        "quantity",
        "amount_display",
        "total_display",
        "due_date",
    )
    list_select_related = ()
    list_prefetch_related = ("invoice",)
    # A due-date range is read through its (due_date, id) index and sorted (decision 019).
    list_sort_filtered = ("due_date",)
    list_filter = (
        "tax_exempt",
        ("due_date", DateRangeFilter),
        ("invoice__status", InvoiceStatusFilter),
        catalogue_filter("invoice__currency", gettext_lazy("currency"), _currencies),
        InvoiceNumberFilter,
        ItemCustomerFilter,
    )
    search_matches = (
        exact("wisecp_id"),
        exact("invoice__number", spellings=_numbers),
        contains("description"),
        contains("invoice__full_name"),
        contains("invoice__company_name"),
    )
    search_help_text = gettext_lazy(
        "WiseCP id or invoice number: exact match; description, customer or company: "
        "contains (words of at least 3 letters)."
    )
    sortable_by = ("wisecp_id", "due_date")
    actions = ["export_csv", "set_due_date", "move_to_invoice", "renumber_sequence"]
    list_per_page = 50
    list_max_show_all = 500
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "wisecp_id",
                    "invoice",
                    "sequence",
                    "description",
                    ("quantity", "amount_display", "total_display"),
                    "tax_exempt",
                    "order_id",
                    "due_date",
                    "attributes_display",
                    "version",
                )
            },
        ),
        (gettext_lazy("Mirror"), {"fields": ("invoice_summary", "synced_at", "push_state")}),
    )
    readonly_fields = (
        "amount_display",
        "total_display",
        "attributes_display",
        "invoice_summary",
        "synced_at",
        "push_state",
    )
    csv_fields = (
        "wisecp_id",
        "invoice__number",
        "invoice__wisecp_id",
        "invoice__full_name",
        "invoice__currency",
        "sequence",
        "description",
        "quantity",
        "amount",
        "total",
        "tax_exempt",
        "order_id",
        "due_date",
        "attributes",
    )
    amount_display = item_money("amount", gettext_lazy("unit price"))
    total_display = item_money("total", gettext_lazy("total"))

    @admin.display(description=gettext_lazy("description"), ordering="description")
    def short_description(self, obj: InvoiceItem) -> str:
        return truncated(obj.description)

    @admin.display(description=gettext_lazy("invoice"), ordering="invoice__wisecp_id")
    def invoice_link(self, obj: InvoiceItem) -> str:
        url = reverse("admin:billing_invoice_change", args=[obj.invoice_id])
        return format_html('<a href="{}">{}</a>', url, obj.invoice)

    @admin.display(description=gettext_lazy("customer"), ordering="invoice__full_name")
    def customer(self, obj: InvoiceItem) -> str:
        return truncated(obj.invoice.customer)

    @admin.display(description=gettext_lazy("invoice"))
    def invoice_summary(self, obj: InvoiceItem) -> str:
        invoice = obj.invoice
        return format_html(
            '<a href="{}">{}</a> · {} · {} · {} {}',
            reverse("admin:billing_invoice_change", args=[invoice.pk]),
            invoice,
            invoice.customer,
            invoice.get_status_display(),
            _("total"),
            money(invoice.total, invoice.currency),
        )

    @admin.display(description=gettext_lazy("save in progress"))
    def push_state(self, obj: InvoiceItem) -> str:
        claim = claim_holder(obj._meta.label_lower, obj.pk)
        if claim is None:
            return "—"
        return pretty_json({"until": claim.until.isoformat(), "by": claim.holder})

    @admin.display(description=gettext_lazy("attributes"))
    def attributes_display(self, obj: InvoiceItem) -> str:
        return pretty_json(obj.attributes)

    # The page is the mirror; edits go through the edit view ---------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_push": self.has_push_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<int:pk>/edit-at-wisecp/",
                self.admin_site.admin_view(self.edit_view),
                name="billing_invoiceitem_edit",
            ),
            *super().get_urls(),
        ]

    def edit_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Edit at WiseCP: the form, a confirmation of what will change, then one push."""
        item = get_object_or_404(InvoiceItem.objects.select_related("invoice"), pk=pk)
        if not self.has_push_permission(request):
            raise PermissionDenied
        may_override = request.user.has_perm(PERM_OVERRIDE_CLOSED)
        step = request.POST.get("step") if request.method == "POST" else None
        form = InvoiceItemEditForm(
            request.POST if step else None,
            item=item,
            admin_site=self.admin_site,
            may_override=may_override,
        )
        preview = None
        if step == "confirm" and form.is_valid():
            done = self._edit_push(request, item, form)
            if done is not None:
                return done
        elif step == "preview" and form.is_valid():
            preview = self._edit_preview(request, item, form)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Edit at WiseCP: %(item)s") % {"item": item},
            "opts": self.opts,
            "original": item,
            "form": form,
            "preview": preview,
            "may_override": may_override,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/billing/invoiceitem/edit.html", context)

    def _edit_preview(
        self, request: HttpRequest, item: InvoiceItem, form: InvoiceItemEditForm
    ) -> dict | None:
        """The confirmation page's content, or None with the refusal on the form."""
        try:
            preview = services.invoice_item_preview(
                item=item,
                changes=form.changes(),
                expected_version=form.cleaned_data["version"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
                override=form.cleaned_data.get("override", False),
            )
        except ValidationError as error:
            form.add_service_error(error)
            return None
        except PushConflict as error:
            form.add_error(None, str(error))
            return None
        if not preview.change:
            form.add_error(None, _("Nothing changed; nothing would be sent to WiseCP."))
            return None
        return edit_preview_rows(item, preview)

    def _edit_push(
        self, request: HttpRequest, item: InvoiceItem, form: InvoiceItemEditForm
    ) -> HttpResponse | None:
        """Send the confirmed change; None re-shows the form with why it did not go out."""
        changes = form.changes()
        try:
            sent = services.invoice_item_changes(item=item, changes=changes).names
            updated = services.invoice_item_update(
                item=item,
                changes=changes,
                expected_version=form.cleaned_data["version"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
                override=form.cleaned_data.get("override", False),
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except ValidationError as error:
            form.add_service_error(error)
            return None
        except (PushConflict, PushFailed) as error:
            self.message_user(request, str(error), messages.ERROR)
            return None
        except (PushInDoubt, AwaitingApproval) as error:
            self.message_user(request, in_doubt_message(error), messages.WARNING)
            return HttpResponseRedirect(self._item_url(item))
        except UpstreamError as error:
            self.message_user(
                request,
                _("Not changed at WiseCP: %(error)s") % {"error": error},
                messages.ERROR,
            )
            return None
        if updated.version == item.version:
            self.message_user(request, _("Nothing changed; nothing was sent to WiseCP."))
        else:
            names = [str(InvoiceItem._meta.get_field(n).verbose_name) for n in sent]
            self.message_user(
                request,
                _("Sent to WiseCP: %(fields)s.") % {"fields": ", ".join(names)},
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._item_url(item))

    def _item_url(self, item: InvoiceItem) -> str:
        return reverse("admin:billing_invoiceitem_change", args=[item.pk])

    # Bulk actions ---------------------------------------------------------------------------

    def has_push_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.PERM_PUSH_ITEM)

    def _bulk(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        action: str,
        form_class: type[BulkActionForm],
        title: str,
    ) -> HttpResponse | None:
        def start(form: BulkActionForm) -> Job:
            try:
                return services.invoice_item_bulk_update(
                    items=queryset,
                    action=action,
                    value=form.value,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    override=form.override_asked,
                )
            except ValidationError as error:
                form_add_errors(form, error)  # by its field (the reason), and as a message
                raise

        may_override = request.user.has_perm(PERM_OVERRIDE_CLOSED)
        return confirm_then_start(
            self,
            request,
            queryset,
            form_class=partial(form_class, may_override=may_override),
            # The reason is asked with the confirmation: the preview judges everything else.
            preview=lambda form: (
                services.invoice_item_bulk_preview(
                    items=queryset,
                    action=action,
                    value=form.value,
                    override=form.override_asked,
                    actor=request.user,
                )
                if form.value_ready()
                else None
            ),
            start=start,
            template="admin/billing/confirm_bulk.html",
            title=title,
            action=action_names[action],
        )

    @admin.action(description=gettext_lazy("Set due date…"), permissions=["push"])
    def set_due_date(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._bulk(
            request,
            queryset,
            action=services.BulkAction.DUE_DATE,
            form_class=DueDateForm,
            title=_("Set the due date of invoice items"),
        )

    @admin.action(description=gettext_lazy("Move to another invoice…"), permissions=["push"])
    def move_to_invoice(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._bulk(
            request,
            queryset,
            action=services.BulkAction.MOVE,
            form_class=MoveForm,
            title=_("Move invoice items to another invoice"),
        )

    @admin.action(description=gettext_lazy("Renumber sequence…"), permissions=["push"])
    def renumber_sequence(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._bulk(
            request,
            queryset,
            action=services.BulkAction.RENUMBER,
            form_class=RenumberForm,
            title=_("Renumber the items of the selected items' invoices"),
        )


action_names = {
    services.BulkAction.DUE_DATE: "set_due_date",
    services.BulkAction.MOVE: "move_to_invoice",
    services.BulkAction.RENUMBER: "renumber_sequence",
}
