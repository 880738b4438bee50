"""Admin pieces every app uses: CSV export, pretty JSON, money columns, action confirmation."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .admin_lists import ScaledListMixin
from .approvals import awaiting_message
from .errors import AwaitingApproval, PushConflict, PushInDoubt, UpstreamError
from .formatting import money
from .redaction import redact_shown


def pretty_json(value: Any) -> str:
    if value in (None, "", {}):
        return "—"
    # Masked again as shown: a row stored before a field joined the lists is not shown in clear.
    text = json.dumps(
        redact_shown(value), ensure_ascii=False, indent=2, sort_keys=True, default=str
    )
    return format_html('<pre class="json">{}</pre>', text)


def money_column(field: str, *, currency_field: str | None = None, description: str = ""):
    """A right-aligned ₺ column that still sorts by the model field."""

    @admin.display(description=description or field, ordering=field)
    def column(*args: Any) -> str:
        # Assigned as a ModelAdmin attribute it is bound, so it gets (modeladmin, obj).
        obj = args[-1]
        currency = getattr(obj, currency_field, "TRY") if currency_field else "TRY"
        return format_html('<span class="money">{}</span>', money(getattr(obj, field), currency))

    return column


class ReadOnlyMixin:
    """Rows that change only through pushes, queries and syncs: no local add, edit or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, Decimal | float):
        return formats.number_format(value, 2, use_l10n=True)
    if isinstance(value, datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        return formats.date_format(value, "SHORT_DATETIME_FORMAT")
    if isinstance(value, date):
        return formats.date_format(value, "SHORT_DATE_FORMAT")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def csv_response(
    filename: str, header: list[str], rows: Iterator[list[Any]]
) -> StreamingHttpResponse:
    """A streamed CSV that Excel opens right in Turkish: UTF-8 with BOM, semicolons, 1.234,56."""
    writer = csv.writer(_Echo(), delimiter=";")

    def lines() -> Iterator[str]:
        yield "\ufeff"
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([_csv_value(v) for v in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CsvExportMixin:
    """Adds "Export to CSV" for the selection, or the whole filtered list with "select all"."""

    csv_fields: tuple[str, ...] = ()
    actions = ["export_csv"]

    @admin.action(description=gettext_lazy("Export selected to CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        from security.personal import mask_columns

        opts = self.model._meta
        names = self.csv_fields or tuple(f.name for f in opts.concrete_fields)
        # Customers' names, e-mails and phones masked without security.view_personal_data.
        masked = mask_columns(self.model, names, request.user)
        header = []
        for name in names:
            # "subscription__reference_no" is titled by the last field, not by "subscription".
            model, field = self.model, None
            for part in name.split("__"):
                field = model._meta.get_field(part)
                model = field.related_model or model
            header.append(str(getattr(field, "verbose_name", name)))

        def rows() -> Iterator[list[Any]]:
            for obj in queryset.iterator(chunk_size=2000):
                row = []
                for name in names:
                    value: Any = obj
                    for part in name.split("__"):
                        value = getattr(value, part, None)
                    if isinstance(value, Model):
                        value = str(value)
                    display = f"get_{name}_display"
                    if "__" not in name and hasattr(obj, display):
                        value = getattr(obj, display)()
                    row.append(value)
                yield masked(row)

        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        return csv_response(f"{slugify(opts.verbose_name_plural)}-{stamp}.csv", header, rows())


class MirrorAdmin(ReadOnlyMixin, CsvExportMixin, ScaledListMixin, admin.ModelAdmin):
    """Rows we do not own: an upstream's mirror, or the record of what it was sent and what it
    answered. Viewed and exported here; they change only through pushes, queries and syncs.
    Their lists may hold millions of rows (upstream.admin_lists)."""

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        from security.personal import shown_masked

        if request.method == "POST" and not (
            "index" in request.POST or helpers.ACTION_CHECKBOX_NAME in request.POST
        ):
            # No action to run: Django renders the list, which a GET shows masked (the
            # personal data middleware masks GETs only).
            return shown_masked(request, partial(super().changelist_view, request, extra_context))
        return super().changelist_view(request, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context=None):
        from security.personal import shown_masked

        # Answers a POST like a GET; it changes nothing.
        return shown_masked(
            request, partial(super().history_view, request, object_id, extra_context)
        )


def confirmation_page(
    request: HttpRequest,
    modeladmin: admin.ModelAdmin,
    queryset: QuerySet,
    *,
    template: str,
    title: str,
    action: str,
    **context: Any,
) -> TemplateResponse:
    """An intermediate page like delete_selected's: it posts the same selection back.

    With "select all N" it posts select_across=1 and the changelist's filters stay in the URL, so
    the action works on the whole filtered result, not only the page.
    """
    select_across = request.POST.get("select_across") == "1"
    # Posted back even with select_across: Django's changelist ignores an action with no boxes.
    selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
    ctx = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "action_name": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "select_across": select_across,
        "selected": selected,
        "selection_count": queryset.count(),
        "form_url": request.get_full_path(),
        **context,
    }
    return TemplateResponse(request, template, ctx)


def error_text(error: Exception) -> str:
    """What staff read for a refused change: a ValidationError's messages, or the error itself."""
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)


def start_job(
    modeladmin: admin.ModelAdmin, request: HttpRequest, start: Callable[[], Any]
) -> HttpResponse | None:
    """Call a service that queues a job; go to the job's page, or show why it was refused.

    Returns None when the service refused (the confirmation page is shown again with the error).
    """
    try:
        job = start()
    except (ValidationError, PermissionDenied) as error:
        modeladmin.message_user(request, error_text(error), messages.ERROR)
        return None
    if job.is_awaiting_approval:
        modeladmin.message_user(request, awaiting_message(job), messages.WARNING)
    else:
        modeladmin.message_user(
            request, _("Job #%(id)s queued: %(title)s") % {"id": job.pk, "title": job.title}
        )
    return HttpResponseRedirect(reverse("admin:upstream_job_change", args=[job.pk]))


def confirm_then_start(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    form_class: type[forms.Form],
    preview: Callable[[Any], Any],
    start: Callable[[Any], Any],
    template: str,
    title: str,
    action: str,
    **context: Any,
) -> HttpResponse:
    """A bulk action in two steps: the confirmation page with its preview, then the job.

    `preview(form)` says what would change (None while the form cannot tell yet) and sends
    nothing; `start(form)` calls the service that queues the job, only on the confirming POST.
    """
    step = request.POST.get("step")
    form = form_class(request.POST if step else None)
    if step == "confirm" and form.is_valid():
        started = start_job(modeladmin, request, lambda: start(form))
        if started:
            return started
    try:
        shown = preview(form)
    except ValidationError as error:
        form.add_error(None, error_text(error))
        shown = None
    return confirmation_page(
        request,
        modeladmin,
        queryset,
        template=template,
        title=title,
        action=action,
        form=form,
        preview=shown,
        **context,
    )


def run_and_report(
    modeladmin: admin.ModelAdmin, request: HttpRequest, run: Callable[[], Any], done: str
) -> bool:
    """Call a service from an admin button: its refusal as an error, else `done` as a success."""
    try:
        run()
    except (ValidationError, PermissionDenied) as error:
        modeladmin.message_user(request, error_text(error), messages.ERROR)
        return False
    modeladmin.message_user(request, done, messages.SUCCESS)
    return True


def form_add_errors(form: forms.Form, error: ValidationError) -> None:
    """A service's ValidationError on the form: each message next to its field, the rest on top."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for name, messages_ in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages_)


def in_doubt_message(error: PushInDoubt | AwaitingApproval) -> str:
    """Not a failure: the push went out and is being settled, or waits for approval; never
    "not done, try again". The message links to its job."""
    job = error.job
    return format_html(
        '{} <a href="{}">{}</a>',
        error.message,
        reverse("admin:upstream_job_change", args=[job.pk]),
        _("Follow it in job #%(id)s.") % {"id": job.pk},
    )


class PushOutcome(StrEnum):
    DONE = "done"
    IN_DOUBT = "in_doubt"
    # Over an approval threshold: recorded, unsent, waiting for a second person.
    AWAITING_APPROVAL = "awaiting_approval"
    REFUSED = "refused"


def push_one(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    push: Callable[[], Any],
    *,
    form: forms.Form | None = None,
) -> tuple[PushOutcome, Any]:
    """Call a service that pushes one record in the request and report what did not go through.

    A refusal of ours goes on the form (when given) or in a message, Paynet's refusal or failure,
    a conflict and a missing permission in an error message, an answer in doubt in a warning with
    its job. Returns the outcome and, when done, the service's result.
    """
    try:
        return PushOutcome.DONE, push()
    except ValidationError as error:
        if form is not None:
            form_add_errors(form, error)
        else:
            modeladmin.message_user(request, error_text(error), messages.ERROR)
    except PushInDoubt as error:
        modeladmin.message_user(request, in_doubt_message(error), messages.WARNING)
        return PushOutcome.IN_DOUBT, error.job
    except AwaitingApproval as error:
        modeladmin.message_user(request, in_doubt_message(error), messages.WARNING)
        return PushOutcome.AWAITING_APPROVAL, error.job
    except (PushConflict, UpstreamError) as error:
        modeladmin.message_user(request, str(error), messages.ERROR)
    except PermissionDenied as error:
        text = str(error) or _("You do not have permission to make this change.")
        modeladmin.message_user(request, text, messages.ERROR)
    return PushOutcome.REFUSED, None


def record_operations(model: type[Model], pk: Any, *, limit: int = 20) -> list[Any]:
    """The latest pushes of one record (single or in a job), with who, why and the outcome."""
    from .models import JobItem

    return list(
        JobItem.objects.filter(target_type=model._meta.label_lower, target_id=str(pk))
        .select_related("job", "job__created_by")
        .order_by("-id")[:limit]
    )


class RecordOperationsMixin:
    """Shows on a mirrored record's page the changes sent for it (template:
    admin/upstream/record_change_form.html)."""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        context = {"record_operations": record_operations(self.model, object_id)}
        return super().change_view(
            request, object_id, form_url, {**context, **(extra_context or {})}
        )
