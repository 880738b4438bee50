from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from upstream.admin.filters import DateRangeFilter, InputFilter, catalogue_filter
from upstream.admin.lists import contains, exact
from upstream.admin.tools import (
    FormattedFieldsMixin,
    PushOutcome,
    ReadOnlyListAdmin,
    RecordOperationsMixin,
    confirm_then_start,
    money_column,
    push_one,
    start_job,
    truncated,
)
from upstream.lists.queries import related_count

from . import services
from .forms import CreateInvoiceForm, RecordStatusForm, StatusChangeForm
from .models import InvoiceStatus, Subscription, SubscriptionInvoice

# Fields of the create form that are not the record's: passed to the service by name.
CREATE_FORM_ONLY = ("reason", "idempotency_key", "allow_duplicate")


class PaynetMirrorAdmin(ReadOnlyListAdmin):
    """Subscriptions and their records: refreshed from Paynet on demand."""

    def _status_action(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        preview: Callable[[int], Any],
        push: Callable[..., Any],
        **page: Any,
    ) -> HttpResponse:
        """Target status and reason, the verdict per record, then a job: both status actions."""

        def shown(form: StatusChangeForm) -> Any:
            # Keep the preview when only the reason is missing, so its error shows next to it.
            form.is_valid()
            status = getattr(form, "cleaned_data", {}).get("status")
            return None if status is None else preview(status)

        return confirm_then_start(
            self,
            request,
            queryset,
            form_class=StatusChangeForm,
            preview=shown,
            start=lambda form: push(
                status=form.cleaned_data["status"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
                upto=form.cleaned_data["upto"],
            ),
            **page,
        )

    def _refresh(
        self, request: HttpRequest, subscriptions: QuerySet[Subscription]
    ) -> HttpResponse | None:
        # A job: its page lists per record what changed (and what Paynet no longer lists).
        return start_job(
            self,
            request,
            lambda: services.subscription_refresh_start(
                subscriptions=subscriptions, actor=request.user
            ),
        )


class SubscriptionReferenceFilter(InputFilter):
    title = gettext_lazy("subscription reference no")
    parameter_name = "subscription_ref"

    def filter_value(self, queryset, value):
        return queryset.filter(subscription__reference_no=value)


class SubscriptionInvoiceInline(FormattedFieldsMixin, admin.TabularInline):
    model = SubscriptionInvoice
    fields = ("invoice_no", "invoice_id", "val_date", "amount_display", "status")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("val_date",)
    amount_display = money_column(
        "amount", currency_field="currency", description=gettext_lazy("amount")
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(RecordOperationsMixin, PaynetMirrorAdmin):
    list_display = (
        "reference_no",
        "name_surname",
        "is_fixed_price",
        "amount_display",
        "interval",
        "invoice_count",
        "created_date",
        "synced_at",
    )
    list_filter = (
        "is_fixed_price",
        "interval",
        # Paynet's status table is the payment records' (paynet.md §3), not a DISTINCT.
        catalogue_filter("status__exact", gettext_lazy("status"), lambda: InvoiceStatus.choices),
        ("created_date", DateRangeFilter),
    )
    search_matches = (
        exact("reference_no"),
        exact("subscription_id"),
        exact("end_user_email"),
        exact("end_user_gsm"),
        contains("name_surname"),
    )
    search_help_text = gettext_lazy(
        "Reference no, subscription id, e-mail or mobile: exact match; "
        "name: contains (words of at least 3 letters)."
    )
    sortable_by = ("reference_no", "name_surname", "created_date")
    actions = ["export_csv", "change_all_invoices_status", "refresh_from_paynet"]
    inlines = [SubscriptionInvoiceInline]
    change_form_template = "admin/subscriptions/subscription/change_form.html"
    csv_fields = (
        "subscription_id",
        "reference_no",
        "name_surname",
        "is_fixed_price",
        "amount",
        "currency",
        "interval",
        "end_user_email",
        "end_user_gsm",
        "created_date",
    )
    amount_display = money_column(
        "amount", currency_field="currency", description=gettext_lazy("amount")
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(invoice_total=related_count(SubscriptionInvoice, "subscription"))
        )

    @admin.display(description=gettext_lazy("payment records"))
    def invoice_count(self, obj: Subscription) -> int:
        return obj.invoice_total

    def has_push_all_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.PERM_STATUS_ALL)

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("subscriptions.sync_subscription")

    @admin.action(
        description=gettext_lazy("Change status of all payment records…"), permissions=["push_all"]
    )
    def change_all_invoices_status(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        subscriptions = queryset.annotate(invoice_total=Count("invoices")).order_by("pk")
        return self._status_action(
            request,
            queryset,
            preview=lambda status: services.subscription_status_all_preview(
                subscriptions=queryset, status=status
            ),
            push=partial(services.subscription_set_status_all, subscriptions=queryset),
            template="admin/subscriptions/confirm_status_all.html",
            title=_("Change status of all payment records"),
            action="change_all_invoices_status",
            subscriptions=subscriptions[:200],
        )

    @admin.action(description=gettext_lazy("Refresh from Paynet"), permissions=["sync"])
    def refresh_from_paynet(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._refresh(request, queryset)

    def get_urls(self):
        return [
            path(
                "<int:pk>/create-invoice/",
                self.admin_site.admin_view(self.create_invoice_view),
                name="subscriptions_subscription_create_invoice",
            ),
            path(
                "<int:pk>/status-all/",
                self.admin_site.admin_view(self.status_all_view),
                name="subscriptions_subscription_status_all",
            ),
            *super().get_urls(),
        ]

    def status_all_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The list action "Change status of all payment records…" for this one subscription,
        from its own page: the same confirmation page, preview and job."""
        if not self.has_push_all_permission(request):
            raise PermissionDenied
        subscription = get_object_or_404(Subscription, pk=pk)
        return self.change_all_invoices_status(
            request, Subscription.objects.filter(pk=subscription.pk)
        )

    def create_invoice_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Form, then "what will be sent" (nothing is sent before confirm), then the push."""
        subscription = get_object_or_404(Subscription, pk=pk)
        if not request.user.has_perm(services.PERM_CREATE_INVOICE):
            raise PermissionDenied
        if subscription.is_fixed_price:
            # Refused before anything is typed: Paynet takes new records only on variable prices.
            self.message_user(
                request,
                _("Payment records can only be created for variable-price subscriptions."),
                messages.ERROR,
            )
            return HttpResponseRedirect(
                reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
            )
        step = request.POST.get("step") if request.method == "POST" else None
        form = CreateInvoiceForm(request.POST if step else None)
        preview = None
        if step in ("preview", "confirm") and form.is_valid():
            data = {k: v for k, v in form.cleaned_data.items() if k not in CREATE_FORM_ONLY}
            if step == "confirm":
                outcome, record = push_one(
                    self,
                    request,
                    lambda: services.subscription_invoice_create(
                        subscription=subscription,
                        actor=request.user,
                        reason=form.cleaned_data["reason"],
                        idempotency_key=form.cleaned_data["idempotency_key"],
                        allow_duplicate=form.cleaned_data["allow_duplicate"],
                        **data,
                    ),
                    form=form,
                )
                if outcome == PushOutcome.DONE:
                    self.message_user(
                        request,
                        _("Payment record %(no)s created at Paynet.") % {"no": record.invoice_no},
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])
                    )
                if outcome in (PushOutcome.IN_DOUBT, PushOutcome.AWAITING_APPROVAL):
                    return HttpResponseRedirect(
                        reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
                    )
            # Only a missing "create anyway" keeps the confirmation page; other errors need edits.
            if step == "preview" or set(form.errors) == {"allow_duplicate"}:
                preview = services.subscription_invoice_create_preview(
                    subscription=subscription, **data
                )
                for name, errors in preview.errors.items():
                    form.add_error(name if name in form.fields else None, errors)
                if preview.errors:
                    preview = None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Create payment record"),
            "opts": self.opts,
            "subscription": subscription,
            "form": form,
            "preview": preview,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/subscriptions/create_invoice.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_create_invoice": request.user.has_perm(services.PERM_CREATE_INVOICE),
            "can_push_all": self.has_push_all_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(SubscriptionInvoice)
class SubscriptionInvoiceAdmin(RecordOperationsMixin, PaynetMirrorAdmin):
    # Fits 1366 px beside the filters: the invoice id and the agent and company shares are on
    # the record's page (the id is searchable).
    list_display = (
        "invoice_no",
        "subscription_link",
        "customer",
        "val_date",
        "amount_display",
        "status",
    )
    list_filter = (
        "status",
        ("subscription__is_fixed_price", admin.BooleanFieldListFilter),
        ("val_date", DateRangeFilter),
        SubscriptionReferenceFilter,
    )
    search_matches = (
        exact("invoice_no"),
        exact("invoice_id"),
        exact("subscription__reference_no"),
        contains("subscription__name_surname"),
    )
    search_help_text = gettext_lazy(
        "Invoice no, invoice id or subscription reference no: exact match; "
        "name: contains (words of at least 3 letters)."
    )
    sortable_by = ("invoice_no", "invoice_id", "val_date", "amount_display")
    list_select_related = ("subscription",)
    actions = ["export_csv", "change_status", "refresh_from_paynet"]
    change_form_template = "admin/subscriptions/subscriptioninvoice/change_form.html"
    list_per_page = 50
    list_max_show_all = 500
    csv_fields = (
        "invoice_no",
        "invoice_id",
        "subscription__reference_no",
        "subscription__name_surname",
        "val_date",
        "amount",
        "agent_amount",
        "company_amount",
        "currency",
        "status",
    )
    amount_display = money_column(
        "amount", currency_field="currency", description=gettext_lazy("amount")
    )
    agent_amount_display = money_column(
        "agent_amount", currency_field="currency", description=gettext_lazy("agent amount")
    )
    company_amount_display = money_column(
        "company_amount", currency_field="currency", description=gettext_lazy("company amount")
    )

    @admin.display(description=gettext_lazy("subscription"), ordering="subscription__reference_no")
    def subscription_link(self, obj: SubscriptionInvoice) -> str:
        return obj.subscription.reference_no

    @admin.display(description=gettext_lazy("name surname"), ordering="subscription__name_surname")
    def customer(self, obj: SubscriptionInvoice) -> str:
        return truncated(obj.subscription.name_surname)

    def has_push_status_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.PERM_INVOICE_STATUS)

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("subscriptions.sync_subscription")

    @admin.action(description=gettext_lazy("Change status…"), permissions=["push_status"])
    def change_status(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._status_action(
            request,
            queryset,
            preview=lambda status: services.subscription_invoice_status_preview(
                records=queryset, status=status
            ),
            push=partial(services.subscription_invoice_set_status_bulk, records=queryset),
            template="admin/subscriptions/confirm_status.html",
            title=_("Change status of payment records"),
            action="change_status",
        )

    @admin.action(description=gettext_lazy("Refresh from Paynet"), permissions=["sync"])
    def refresh_from_paynet(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        subs = Subscription.objects.filter(pk__in=queryset.values("subscription_id").distinct())
        return self._refresh(request, subs)

    def get_urls(self):
        return [
            path(
                "<int:object_id>/change-status/",
                self.admin_site.admin_view(self.change_status_view),
                name="subscriptions_subscriptioninvoice_change_status",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_push_status": self.has_push_status_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def change_status_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Target status and reason, then the verdict and the amount, then one push."""
        if not self.has_push_status_permission(request):
            raise PermissionDenied
        record = get_object_or_404(
            SubscriptionInvoice.objects.select_related("subscription"), pk=object_id
        )
        record_url = reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])
        step = request.POST.get("step") if request.method == "POST" else None
        form = RecordStatusForm(request.POST if step else None)
        preview = None
        if step in ("preview", "confirm") and form.is_valid():
            status = form.cleaned_data["status"]
            if step == "confirm":
                outcome, updated = push_one(
                    self,
                    request,
                    lambda: services.subscription_invoice_set_status(
                        record=record,
                        status=status,
                        actor=request.user,
                        reason=form.cleaned_data["reason"],
                        idempotency_key=form.cleaned_data["idempotency_key"],
                    ),
                )
                if outcome == PushOutcome.DONE:
                    self.message_user(
                        request,
                        _("Payment record %(no)s is now “%(status)s” at Paynet.")
                        % {"no": updated.invoice_no, "status": updated.get_status_display()},
                        messages.SUCCESS,
                    )
                if outcome != PushOutcome.REFUSED:
                    return HttpResponseRedirect(record_url)
                record.refresh_from_db()
            else:
                preview = services.subscription_invoice_status_preview(
                    records=SubscriptionInvoice.objects.filter(pk=record.pk), status=status
                )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Change status of payment record %(no)s") % {"no": record.invoice_no},
            "opts": self.opts,
            "original": record,
            "record_url": record_url,
            "form": form,
            "preview": preview,
            "verdict": preview.sample[0][1] if preview and preview.sample else None,
        }
        return TemplateResponse(
            request, "admin/subscriptions/subscriptioninvoice/change_status.html", context
        )
