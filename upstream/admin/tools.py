"""Admin pieces every app uses: CSV export, pretty JSON, money columns, action confirmation."""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import models
from django.db.models import Model, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from upstream.admin.lists import ScaledListMixin
from upstream.calls.errors import (
    AwaitingApproval,
    PushConflict,
    PushFailed,
    PushInDoubt,
    UpstreamError,
)
from upstream.calls.redaction import redact_shown
from upstream.l10n.formats import duration, money
from upstream.lists.cells import inert
from upstream.models import Job
from upstream.pushes.approvals import approval_reason, awaiting_message
from upstream.pushes.once import (
    fingerprint,
    once_begin,
    once_forget,
    once_jobs,
    once_release_stale,
    once_scope,
    once_stale,
    once_store,
    once_wait,
)


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


def truncated(text: Any) -> str:
    """Long text in a list cell: one line cut with "…" by CSS, the whole of it on hover."""
    value = "" if text is None else str(text)
    return format_html('<span class="truncated" title="{}">{}</span>', value, value)


def truncated_column(field: str, description: Any, ordering: str | None = None):
    """A list column of a long text field, cut to the cell's width (see `truncated`)."""

    @admin.display(description=description, ordering=ordering)
    def column(*args: Any) -> str:
        return truncated(getattr(args[-1], field))

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
    if isinstance(value, str):
        return inert(value)  # never a formula in the reader's spreadsheet (upstream.lists.cells)
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
        return inert(json.dumps(value, ensure_ascii=False))
    return inert(str(value))


_ASCII_TURKISH = str.maketrans("ıİğĞşŞçÇöÖüÜ", "iIgGsScCoOuU")


def attachment_disposition(filename: str) -> str:
    """Content-Disposition for a download named in the reader's language (RFC 6266/5987).

    `filename*` keeps every letter ("ödeme-kayıtları-….csv"); the plain `filename` beside it is
    the ASCII spelling for clients that read only that one ("odeme-kayitlari-….csv", not the
    "odeme-kaytlar" that dropping the letters gave).
    """
    stem, dot, ext = filename.rpartition(".")
    if not dot:
        stem, ext = filename, ""
    fallback = slugify(stem.translate(_ASCII_TURKISH)) or "download"
    fallback = f"{fallback}.{ext}" if ext else fallback
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def csv_response(
    filename: str, header: list[str], rows: Iterator[list[Any]]
) -> StreamingHttpResponse:
    """A streamed CSV that Excel opens right in Turkish: UTF-8 with BOM, semicolons, 1.234,56.

    Every text cell is made inert (no formula runs when it is opened: upstream.lists.cells)."""
    writer = csv.writer(_Echo(), delimiter=";")

    def lines() -> Iterator[str]:
        yield "\ufeff"
        yield writer.writerow([inert(title) for title in header])
        for row in rows:
            yield writer.writerow([_csv_value(v) for v in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = attachment_disposition(filename)
    return response


class CsvExportMixin:
    """Adds "Export to CSV" for the selection, or the whole filtered list with "select all"."""

    csv_fields: tuple[str, ...] = ()
    actions = ["export_csv"]

    @admin.action(description=gettext_lazy("Export selected to CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        from security.personal import mask_columns

        opts = self.model._meta
        # Generated columns (a stored search fold) only repeat another column.
        names = self.csv_fields or tuple(f.name for f in opts.concrete_fields if not f.generated)
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
        name = slugify(str(opts.verbose_name_plural), allow_unicode=True)
        return csv_response(f"{name}-{stamp}.csv", header, rows())


def _is_money(field: Any) -> bool:
    # Every money column is DecimalField(max_digits >= 14, decimal_places=2); rates are smaller.
    return (
        isinstance(field, models.DecimalField)
        and field.decimal_places == 2
        and (field.max_digits or 0) >= 14
    )


def _is_identifier(field: Any) -> bool:
    # An id or a number someone types or reads out ("1704", never "1.704").
    return isinstance(field, models.IntegerField) and (
        field.name == "id" or field.name.endswith(("_id", "_no"))
    )


def record_currency(obj: Any) -> str:
    """The currency an amount of this row is in: its own, its invoice's, else the lira."""
    for owner in (obj, getattr(obj, "invoice", None)):
        currency = getattr(owner, "currency", None)
        if currency:
            return currency
    return "TRY"


class FormattedFieldsMixin:
    """Detail pages and lists write money as "₺ 1.234,56" and ids as typed ("1704").

    Django displays a DecimalField as a bare number and groups every integer ("1.704"), so those
    model fields are shown through display callables here, sorted by the field as before.
    """

    def _formatted(self, name: Any) -> Any:
        if not isinstance(name, str) or name.startswith("-"):
            return name
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        cache = self.__dict__.setdefault("_formatted_cache", {})
        if name in cache:
            return cache[name]
        if _is_money(field):

            def display(obj: Any, _name: str = name) -> str:
                return format_html(
                    '<span class="money">{}</span>',
                    money(getattr(obj, _name), record_currency(obj)),
                )

        elif isinstance(field, models.IntegerField) and name.endswith("_ms"):

            def display(obj: Any, _name: str = name) -> str:
                return duration(getattr(obj, _name))

            display.__name__ = name
            display = admin.display(description=gettext_lazy("duration"), ordering=name)(display)
            cache[name] = display
            return display
        elif _is_identifier(field):

            def display(obj: Any, _name: str = name) -> str:
                value = getattr(obj, _name)
                return "" if value is None else str(value)

        else:
            return name
        display.__name__ = name
        display = admin.display(description=field.verbose_name, ordering=name)(display)
        cache[name] = display
        return display

    def _formatted_fields(self, fields: Any, convert: Callable[[Any], Any] | None = None) -> Any:
        convert = convert or self._formatted
        if isinstance(fields, list | tuple):
            return type(fields)(self._formatted_fields(f, convert) for f in fields)
        return convert(fields)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list:
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            # Editable fields keep their form inputs; only the read-only ones are displays.
            readonly = set(super().get_readonly_fields(request, obj))
            keep = lambda name: name if name not in readonly else self._formatted(name)  # noqa: E731
        else:
            keep = self._formatted
        return [
            (name, {**options, "fields": self._formatted_fields(options["fields"], keep)})
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self._formatted_fields(super().get_readonly_fields(request, obj))

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._formatted_fields(super().get_list_display(request))


class KnownActionsMixin:
    """A posted action this list does not offer the user (forged, or a permission they lack)
    is refused by name; Django would say "No action selected." as if nothing had been chosen."""

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        name = request.POST.get("action", "")
        if name and name not in self.get_actions(request):
            self.message_user(
                request,
                _("The action “%(action)s” is not available to you on this list; nothing was done.")
                % {"action": name[:50]},
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


class ReadOnlyListAdmin(
    KnownActionsMixin,
    FormattedFieldsMixin,
    ReadOnlyMixin,
    CsvExportMixin,
    ScaledListMixin,
    admin.ModelAdmin,
):
    """Rows we do not own: an upstream's mirror, or the record of what it was sent and what it
    answered (the call log, jobs). Viewed and exported here; they change only through pushes,
    queries and syncs. Their lists may hold millions of rows (upstream.admin.lists)."""

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        from security.personal import shown_masked

        # The action bar's one-time token: an action that starts a job from the list runs once.
        extra_context = {"launch_token": new_launch_token(), **(extra_context or {})}
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


# --- One job per confirmation: the one-time token ---------------------------------------------

# The hidden field of every form that starts work: bulk confirmation pages
# (admin/_selection_fields.html), the changelists' action bar (a refresh starts a job from it),
# a job's retry/resume/cancel page and a bill query batch's confirmation.
LAUNCH_TOKEN = "launch_token"  # noqa: S105 (a form field's name)
_TOKEN = re.compile(r"[0-9a-f]{32}")
T = TypeVar("T")


def new_launch_token() -> str:
    return uuid.uuid4().hex


def launch_token(request: HttpRequest) -> str:
    """A confirmation page's token: the one its own form posted back (a preview step keeps it,
    so preview and confirm are one launch), else a new one (the page opened from the list)."""
    posted = request.POST.get(LAUNCH_TOKEN, "") if request.POST.get("step") else ""
    return posted if _TOKEN.fullmatch(posted) else new_launch_token()


@dataclass(frozen=True)
class Repeated:
    """The same confirmation posted again (a double click, a reload): what the first started."""

    jobs: list[Job]
    # The first failed in our own code before it started anything: nothing was sent.
    failed: bool = False
    # The first is still being processed and has started no job yet.
    running: bool = False


def _form_digest(request: HttpRequest) -> str:
    fields = sorted(
        (name, request.POST.getlist(name)) for name in request.POST if name != "csrfmiddlewaretoken"
    )
    return fingerprint("POST", request.get_full_path(), fields)


def launch_once(
    request: HttpRequest,
    start: Callable[[], T],
    *,
    started: Callable[[T], bool] = lambda result: True,
) -> T | Repeated:
    """Run `start` (a service that starts work) at most once per posted one-time token.

    The token and what the form posted are one row of the idempotency store, inserted before
    anything starts: of two copies of the same post, concurrent or not, one runs and the other
    gets `Repeated` with the jobs the first started (linked in their own transaction). A refusal
    that started nothing (the service's ValidationError or PermissionDenied, or `started` saying
    so) forgets the token, so the corrected form may go again; a failure in our own code is
    kept, so the same form again says so instead of starting. A post without a token (a script,
    a page from before tokens) runs as it always did.
    """
    token = request.POST.get(LAUNCH_TOKEN, "").strip() if request.method == "POST" else ""
    if not _TOKEN.fullmatch(token) or not request.user.is_authenticated:
        return start()
    digest = _form_digest(request)
    # The request is part of the key: the same token on another request (a page reached by
    # "back" and used again for something else) is another launch, not a repeat.
    key = f"form:{token}:{digest[:40]}"
    once = once_begin(user=request.user, key=key, method="POST", path=request.path, digest=digest)
    if not once.ours:
        first = once_wait(once.record)
        if first is None or (once_stale(first) and once_release_stale(first)):
            return launch_once(request, start, started=started)  # the first started nothing
        jobs = once_jobs(first)
        return Repeated(
            jobs=jobs,
            failed=first.status_code == 500 and not jobs,
            running=first.status_code is None and not jobs,
        )
    record = once.record
    with once_scope(record):
        try:
            result = start()
        except (ValidationError, PermissionDenied):
            _settle(record, refused=True)
            raise
        except Exception:
            _settle(record, refused=False, failed=True)
            raise
    _settle(record, refused=not started(result))
    return result


def _settle(record: Any, *, refused: bool, failed: bool = False) -> None:
    if once_jobs(record):
        once_store(record, 200, None)  # it started something: that is what a repeat is told
    elif refused:
        once_forget(record)
    else:
        once_store(record, 500 if failed else 200, None)


def repeated_message(repeat: Repeated) -> str:
    """What the second copy of a confirmation says instead of starting anything."""
    if repeat.jobs:
        return format_html(
            "{} {}",
            _("This confirmation was already sent; nothing was started again."),
            _job_links(repeat.jobs),
        )
    if repeat.running:
        return _(
            "This confirmation is still being processed; nothing was started again. Look at "
            "the jobs in a moment."
        )
    if repeat.failed:
        return _(
            "This confirmation was already sent and failed in our own code before anything "
            "started; nothing was sent. Open the action again to send it."
        )
    return _("This confirmation was already sent; nothing was started again.")


def _job_links(jobs: list[Job]) -> str:
    return format_html_join(
        ", ",
        '<a href="{}">{}</a>',
        (
            (reverse("admin:upstream_job_change", args=[job.pk]), _("Job #%(id)s") % {"id": job.pk})
            for job in jobs
        ),
    )


def repeated_answer(
    modeladmin: admin.ModelAdmin, request: HttpRequest, repeat: Repeated
) -> HttpResponseRedirect:
    """The second copy's page: the first job's (or the list), with a message saying so."""
    modeladmin.message_user(request, repeated_message(repeat), messages.WARNING)
    if repeat.jobs:
        return HttpResponseRedirect(reverse("admin:upstream_job_change", args=[repeat.jobs[0].pk]))
    return HttpResponseRedirect(request.get_full_path())


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
    the action works on the whole filtered result, not only the page. It carries a one-time
    token (`launch_once`): the same confirmation posted twice starts one job.
    """
    select_across = request.POST.get("select_across") == "1"
    preview = context.get("preview")
    if getattr(preview, "will_change", 0):
        # Before confirming: will it wait for a second person, and why (its size, or with
        # what this person sent without approval in the window)?
        context["approval_notice"] = approval_reason(
            preview.will_change, getattr(preview, "change_total", None), request.user
        )
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
        "launch_token": launch_token(request),
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
    Once per one-time token: the same form posted again goes to the first job's page.
    """
    try:
        job = launch_once(request, start)
    except (ValidationError, PermissionDenied) as error:
        modeladmin.message_user(request, error_text(error), messages.ERROR)
        return None
    if isinstance(job, Repeated):
        return repeated_answer(modeladmin, request, job)
    if job.is_awaiting_approval:
        modeladmin.message_user(request, awaiting_message(job), messages.WARNING)
    else:
        modeladmin.message_user(
            request, _("Job #%(id)s queued: %(title)s") % {"id": job.pk, "title": job.display_title}
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
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    run: Callable[[], Any],
    done: str | Callable[[Any], str],
) -> bool:
    """Call a service from an admin button: its refusal as an error, else `done` as a success
    (`done` may be made from the service's answer). A `run` wrapped in `launch_once` that
    answers `Repeated` (the same form posted again) says so and does nothing else."""
    try:
        answer = run()
    except (ValidationError, PermissionDenied) as error:
        modeladmin.message_user(request, error_text(error), messages.ERROR)
        return False
    if isinstance(answer, Repeated):
        modeladmin.message_user(request, repeated_message(answer), messages.WARNING)
        return True
    modeladmin.message_user(request, done(answer) if callable(done) else done, messages.SUCCESS)
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
    except (PushConflict, PushFailed, UpstreamError) as error:
        modeladmin.message_user(request, str(error), messages.ERROR)
    except PermissionDenied as error:
        text = str(error) or _("You do not have permission to make this change.")
        modeladmin.message_user(request, text, messages.ERROR)
    return PushOutcome.REFUSED, None


def record_operations(model: type[Model], pk: Any, *, limit: int = 20) -> list[Any]:
    """The latest pushes of one record (single or in a job), with who, why and the outcome:
    those aimed at it, and those aimed at another record that changed it (a payment record
    created by its subscription's push)."""
    from upstream.history.timeline import pushed_from_elsewhere
    from upstream.models import JobItem

    items = JobItem.objects.select_related("job", "job__created_by").order_by("-id")
    aimed = list(items.filter(target_type=model._meta.label_lower, target_id=str(pk))[:limit])
    _calls, elsewhere = pushed_from_elsewhere(model, pk, limit=limit)
    if not elsewhere:
        return aimed
    # Two indexed reads merged here: an OR of both could make the planner walk every item.
    merged = {item.pk: item for item in [*aimed, *items.filter(pk__in=elsewhere)[:limit]]}
    return sorted(merged.values(), key=lambda item: -item.pk)[:limit]


class RecordOperationsMixin:
    """Shows on a mirrored record's page the changes sent for it and its timeline (template:
    admin/upstream/record_change_form.html)."""

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context=None
    ) -> HttpResponse:
        # Django's own history lists admin edits, and mirrored records get none: their history
        # is the timeline on the record's page.
        if not str(object_id).isdigit():
            raise Http404
        opts = self.model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
        return HttpResponseRedirect(f"{url}#record-timeline")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        context = {"record_operations": record_operations(self.model, object_id)}
        record = (
            self.model._base_manager.filter(pk=object_id).first() if object_id.isdigit() else None
        )
        if record is not None:
            from security.personal import sees_personal_data
            from upstream.history.timeline import record_timeline

            # Newest first on the page; the API serves the same events oldest first.
            events = record_timeline(record, masked=not sees_personal_data(request.user))
            context["record_timeline"] = list(reversed(events))
        return super().change_view(
            request, object_id, form_url, {**context, **(extra_context or {})}
        )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 403 page (config.urls handler403): the admin's frame, the reader's language, a way
    back; Django's default is a bare English "403 Forbidden"."""
    from django.contrib.admin import site
    from django.http import JsonResponse
    from django.utils.http import url_has_allowed_host_and_scheme

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": _("You do not have permission to do this.")}, status=403)
    referer = request.headers.get("referer", "")
    back = referer if url_has_allowed_host_and_scheme(referer, {request.get_host()}) else ""
    context = {
        **site.each_context(request),
        "title": _("You may not open this page"),
        "back_url": back if back != request.build_absolute_uri() else "",
    }
    return TemplateResponse(request, "403.html", context, status=403).render()


def with_live_labels(rows: Iterable[Any]) -> list[Any]:
    """Job items or calls, each with `live_repr`: its record's label as the reader may see it.

    Their stored `target_repr` is masked for every reader (viewers read job pages too); loaded
    in the reader's request, the records are masked only for readers without the permission
    (security.personal), so an operator reads the names. One query per record type.
    """
    rows = list(rows)
    wanted: dict[str, set[int]] = {}
    for row in rows:
        if str(row.target_id).isdigit():
            wanted.setdefault(row.target_type, set()).add(int(row.target_id))
    labels: dict[tuple[str, str], str] = {}
    for target_type, ids in wanted.items():
        try:
            model = apps.get_model(target_type)
        except (LookupError, ValueError):
            continue
        for record in model._default_manager.filter(pk__in=ids):
            labels[(target_type, str(record.pk))] = str(record)
    for row in rows:
        row.live_repr = labels.get((row.target_type, str(row.target_id)), row.target_repr)
    return rows
