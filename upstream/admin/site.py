from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from upstream.admin.approvals import ApprovalAdminMixin, AwaitingMyApprovalFilter
from upstream.admin.filters import DateRangeFilter, catalogue_filter
from upstream.admin.lists import any_record_type, contains, exact, prefix
from upstream.admin.tools import (
    ReadOnlyListAdmin,
    launch_once,
    new_launch_token,
    pretty_json,
    run_and_report,
    truncated,
    truncated_column,
    with_live_labels,
)
from upstream.calls.client import operation_catalogue
from upstream.calls.remask import masked_url
from upstream.console.waits import IN_DOUBT_SHOWN, job_in_doubt, job_pause
from upstream.history.sync_job import sync_page
from upstream.history.timeline import record_link
from upstream.l10n.capitals import capfirst
from upstream.lists.exports import job_results_csv, job_results_xlsx
from upstream.models import Job, JobItem, Service, UpstreamCall
from upstream.pushes.jobs import (
    cancel_counts,
    job_cancel,
    job_resume_cancelled,
    job_retry_failed,
    may_steer,
    owns_job,
)
from upstream.pushes.kinds import kind_for, kind_label, registered_kinds


def _call_operations() -> list[tuple[str, str]]:
    # The service by its name ("Paynet", as the list's column writes it), not its code.
    names = dict(Service.choices)
    return [(op, f"{names.get(service, service)} · {op}") for service, op in operation_catalogue()]


def _job_kinds() -> list[tuple[str, str]]:
    return [(kind, kind_label(kind)) for kind in registered_kinds()]


@admin.register(UpstreamCall)
class UpstreamCallAdmin(ReadOnlyListAdmin):
    # Fits 1366 px beside the filters; the upstream code and who made the call are on its page.
    list_display = (
        "id",
        "created_at",
        "service",
        "operation",
        "target_link",
        "status_code",
        "outcome_badge",
        "duration_ms",
        "job_column",
    )
    list_filter = (
        "service",
        catalogue_filter("operation", gettext_lazy("operation"), _call_operations),
        "outcome",
        ("created_at", DateRangeFilter),
    )
    # Never a substring of the bodies: every search below is one index lookup.
    search_matches = (
        exact("id"),
        exact("job_id"),
        exact("target_id", within=any_record_type),
        exact("upstream_code"),
        prefix("target_repr"),
    )
    search_help_text = gettext_lazy(
        "Call no, job no, target id or upstream code: exact match; target: starts with."
    )
    sortable_by = ("id", "created_at")
    list_select_related = ("actor", "job")
    # The job's frozen selection can be megabytes: never read it for a list.
    list_defer = ("request_headers", "request", "response", "job__selection", "job__params")
    csv_fields = (
        "id",
        "created_at",
        "service",
        "operation",
        "target_repr",
        "status_code",
        "upstream_code",
        "upstream_message",
        "outcome",
        "duration_ms",
    )
    fields = (
        ("service", "operation", "method"),
        "url_shown",
        ("outcome", "status_code", "upstream_code", "attempt", "duration_ms"),
        "upstream_message",
        "error",
        ("target_type_display", "target_id", "target_link"),
        ("actor", "job", "job_item"),
        "created_at",
        "request_headers_pretty",
        "request_pretty",
        "response_pretty",
    )
    readonly_fields = tuple(
        name for group in fields for name in (group if isinstance(group, tuple) else (group,))
    )

    @admin.display(description=gettext_lazy("URL"))
    def url_shown(self, obj: UpstreamCall) -> str:
        # Masked again as shown, as the bodies are (rows stored before a key joined the lists).
        return masked_url(obj.url)

    @admin.display(description=gettext_lazy("record type"))
    def target_type_display(self, obj: UpstreamCall) -> str:
        return record_type_label(obj.target_type)

    @admin.display(description=gettext_lazy("target"))
    def target_link(self, obj: UpstreamCall) -> str:
        # A link to the record, cut to the column's width with the whole of it on hover.
        return record_link(obj.target_type, obj.target_id, truncated(obj.target_repr))

    @admin.display(description=gettext_lazy("job"))
    def job_column(self, obj: UpstreamCall) -> str:
        # The number only, its title on hover: the column stays narrow.
        if not obj.job_id:
            return "—"
        return format_html('<span title="{}">#{}</span>', obj.job.display_title, obj.job_id)

    @admin.display(description=gettext_lazy("outcome"), ordering="outcome")
    def outcome_badge(self, obj: UpstreamCall) -> str:
        return format_html(
            '<span class="badge badge-{}">{}</span>', obj.outcome, obj.get_outcome_display()
        )

    @admin.display(description=gettext_lazy("request headers"))
    def request_headers_pretty(self, obj: UpstreamCall) -> str:
        return pretty_json(obj.request_headers)

    @admin.display(description=gettext_lazy("request"))
    def request_pretty(self, obj: UpstreamCall) -> str:
        return pretty_json(obj.request)

    @admin.display(description=gettext_lazy("response"))
    def response_pretty(self, obj: UpstreamCall) -> str:
        return pretty_json(obj.response)


def record_type_label(target_type: str) -> str:
    """The model's name ("Payment record"), not its label ("subscriptions.subscriptioninvoice")."""
    try:
        return str(capfirst(apps.get_model(target_type)._meta.verbose_name))
    except (LookupError, ValueError):
        return target_type or "—"


@admin.register(Job)
class JobAdmin(ApprovalAdminMixin, ReadOnlyListAdmin):
    list_display = (
        "id",
        "title_display",
        "kind_display",
        "state",
        "progress",
        "created_by",
        "created_at",
    )
    list_filter = (
        AwaitingMyApprovalFilter,
        "state",
        catalogue_filter("kind", gettext_lazy("kind"), _job_kinds),
        "inline",
        ("created_at", DateRangeFilter),
    )
    search_matches = (exact("id"), contains("title"), contains("reason"))
    search_help_text = gettext_lazy(
        "Job no: exact match; title, reason: contains (words of at least 3 letters)."
    )
    sortable_by = ("id", "created_at")
    list_select_related = ("created_by",)
    change_form_template = "admin/upstream/job/progress.html"
    csv_fields = (
        "id",
        "title",
        "kind",
        "state",
        "total",
        "succeeded",
        "failed",
        "cancelled",
        "skipped",
        "inline",
        "created_at",
        "finished_at",
        "reason",
    )

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, obj: Job) -> str:
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{}',
            obj.total or 1,
            obj.processed,
            obj.processed,
            obj.total,
        )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:pk>/progress.json",
                self.admin_site.admin_view(self.progress_json),
                name="{}_{}_progress".format(*info),
            ),
            path(
                "<int:pk>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="{}_{}_retry".format(*info),
            ),
            path(
                "<int:pk>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
            path(
                "<int:pk>/resume/",
                self.admin_site.admin_view(self.resume_view),
                name="{}_{}_resume".format(*info),
            ),
            path(
                "<int:pk>/results.<str:fmt>",
                self.admin_site.admin_view(self.results_view),
                name="{}_{}_results".format(*info),
            ),
            *self.approval_urls(),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Django's "Select %s to view" with the catalogue's capital İş read "… İş seçin".
        extra_context = {"title": _("Select a job to view"), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("title"))
    def title_display(self, obj: Job) -> str:
        return truncated(obj.display_title)

    @admin.display(description=gettext_lazy("kind"), ordering="kind")
    def kind_display(self, obj: Job) -> str:
        return truncated(kind_label(obj.kind))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ):
        job = get_object_or_404(Job, pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        failures = (
            job.items.filter(outcome__in=JobItem.FAILED_OUTCOMES)
            .select_related("call")
            .order_by("position")[:500]
        )
        try:
            handler = kind_for(job.kind)
        except LookupError:
            handler = None
        # Cancel, retry and resume: the creator, or a person allowed to steer others' jobs.
        can_push = handler is not None and may_steer(request.user, job)
        recent = list(
            job.items.filter(state=JobItem.State.DONE).order_by("-finished_at", "-position")[:20]
        )
        for item in recent:
            item.description = handler.describe(item.result) if handler else ""
        context = {
            **self.admin_site.each_context(request),
            "title": job.display_title,
            "opts": self.opts,
            "job": job,
            "failures": with_live_labels(failures),
            "failure_count": job.items.filter(outcome__in=JobItem.FAILED_OUTCOMES).count(),
            "skipped": with_live_labels(
                job.items.filter(outcome=JobItem.Outcome.SKIPPED).order_by("position")[:500]
            ),
            "recent": with_live_labels(recent),
            "pause": job_pause(job),
            "in_doubt": with_live_labels(job_in_doubt(job)[:IN_DOUBT_SHOWN]),
            "in_doubt_count": job_in_doubt(job).count(),
            "can_push": can_push,
            "sync": sync_page(job),
            "job_actions": job.actions.select_related("actor"),
            "has_view_permission": True,
            "original": job,
            **self.approval_context(request, job),
            **(extra_context or {}),
        }
        from django.template.response import TemplateResponse

        return TemplateResponse(request, self.change_form_template, context)

    def results_view(self, request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
        """Every item's result, as CSV (Turkish text formats) or Excel."""
        job = get_object_or_404(Job, pk=pk)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        if fmt == "csv":
            return job_results_csv(job)
        if fmt == "xlsx":
            return job_results_xlsx(job)
        raise Http404

    def progress_json(self, request: HttpRequest, pk: int) -> JsonResponse:
        job = get_object_or_404(Job, pk=pk)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return JsonResponse(
            {
                "id": job.pk,
                "state": job.state,
                "state_label": job.get_state_display(),
                "total": job.total,
                "done": job.done,
                "succeeded": job.succeeded,
                "failed": job.failed,
                "cancelled": job.cancelled,
                "skipped": job.skipped,
                "processed": job.processed,
                "prepared": job.prepared,
                "preparing": job.is_preparing,
                "percent": job.percent,
                "finished": job.is_finished,
                # The breaker's pause, said while it lasts ("" once calls go again).
                "paused": pause.message if (pause := job_pause(job)) else "",
            }
        )

    def _confirmed_action(
        self,
        request: HttpRequest,
        pk: int,
        service: Callable[..., Any],
        *,
        title: str,
        question: str,
        button: str,
        done_message: str | Callable[[Any], str],
    ) -> HttpResponse:
        """Nothing happens on the first request: a page says what will, and asks to confirm."""
        job = get_object_or_404(Job, pk=pk)
        back = HttpResponseRedirect(reverse("admin:upstream_job_change", args=[pk]))
        if not may_steer(request.user, job):
            # The same refusal the service (and the API) gives.
            text = (
                _("This job belongs to another person; you may not change it.")
                if request.user.has_perm(kind_for(job.kind).permission)
                else _("You do not have permission to change this job.")
            )
            self.message_user(request, text, messages.ERROR)
            return back
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            reason = request.POST.get("reason", "")
            # Once per page (its one-time token): a double click retries, resumes or cancels once.
            run_and_report(
                self,
                request,
                lambda: launch_once(
                    request, lambda: service(job=job, actor=request.user, reason=reason)
                ),
                done_message,
            )
            return back
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "job": job,
            "title": title,
            "question": question,
            "button": button,
            "launch_token": new_launch_token(),
            # Another person's job: the step needs a reason, kept on the job.
            "others_job": not owns_job(request.user, job),
        }
        return TemplateResponse(request, "admin/upstream/job/confirm_action.html", context)

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        count = JobItem.objects.filter(job_id=pk, outcome__in=JobItem.FAILED_OUTCOMES).count()
        return self._confirmed_action(
            request,
            pk,
            job_retry_failed,
            title=_("Retry failed items"),
            question=_(
                "Send the %(count)s failed items again? Items whose outcome is unknown are read "
                "back first and sent only if the change is not there; items whose record changed "
                "since the preview are skipped."
            )
            % {"count": count},
            button=_("Yes, retry them"),
            done_message=_("The failed items are queued again."),
        )

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(Job, pk=pk)
        # Before the cancel: what waits, and the claimed items beyond what can be in flight
        # (the upstream's concurrency). The answer, once the cancel took hold, is exact.
        items = JobItem.objects.filter(job_id=pk)
        count = items.filter(state=JobItem.State.PENDING).count()
        try:
            concurrency = max(1, kind_for(job.kind).concurrency())
        except LookupError:
            concurrency = 1
        count += max(items.filter(state=JobItem.State.SENDING).count() - concurrency, 0)
        if job.prepared is not None:
            count += max(job.total - job.prepared, 0)  # frozen entries not yet written as items

        def done(cancelled: Job) -> str:
            counts = cancel_counts(cancelled)
            return _(
                "Cancelled: %(not_sent)s items not yet sent will not be sent (you can resume "
                "them); %(sent)s were sent before the cancel took hold."
            ) % {"not_sent": counts.not_sent, "sent": counts.sent}

        return self._confirmed_action(
            request,
            pk,
            job_cancel,
            title=_("Cancel job"),
            question=_(
                "Stop the job? The %(count)s items not yet sent will not be sent; items already "
                "on their way finish. You can resume the cancelled items later."
            )
            % {"count": count},
            button=_("Yes, cancel the job"),
            done_message=done,
        )

    def resume_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        count = JobItem.objects.filter(job_id=pk, outcome=JobItem.Outcome.CANCELLED).count()
        return self._confirmed_action(
            request,
            pk,
            job_resume_cancelled,
            title=_("Resume cancelled items"),
            question=_(
                "Send the %(count)s cancelled items now? Each is checked against its record just "
                "before sending; one that changed since the preview is skipped."
            )
            % {"count": count},
            button=_("Yes, resume them"),
            done_message=_("The cancelled items are queued again."),
        )


@admin.register(JobItem)
class JobItemAdmin(ReadOnlyListAdmin):
    list_display = (
        "job_column",
        "position",
        "target_link",
        "state",
        "outcome",
        "upstream_code",
        "message_column",
        "finished_at",
    )
    message_column = truncated_column("display_message", gettext_lazy("message"))

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {"title": _("Select a job item to view"), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("job"))
    def job_column(self, obj: JobItem) -> str:
        return truncated(obj.job)

    list_filter = (
        "state",
        "outcome",
        "in_doubt",
        catalogue_filter("job__kind", gettext_lazy("kind"), _job_kinds),
    )
    search_matches = (
        exact("job_id"),
        exact("target_id", within=any_record_type),
        prefix("target_repr"),
    )
    search_help_text = gettext_lazy("Job no or target id: exact match; target: starts with.")
    # Newest job first: the (job, position) index read backwards.
    ordering = ("-job_id", "-position")
    sortable_by = ("finished_at",)
    list_select_related = ("job",)
    raw_id_fields = ("job", "call")
    csv_fields = (
        "job",
        "position",
        "target_repr",
        "state",
        "outcome",
        "upstream_code",
        "message",
        "finished_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .defer("payload", "result", "job__params", "job__selection")
        )

    def get_fields(self, request: HttpRequest, obj: JobItem | None = None) -> list[str]:
        # The record's type by its name, where the model field would show its label.
        fields = [f for f in super().get_fields(request, obj) if f != "target_type_display"]
        return ["target_type_display" if f == "target_type" else f for f in fields]

    def get_readonly_fields(self, request: HttpRequest, obj: JobItem | None = None):
        return (*super().get_readonly_fields(request, obj), "target_type_display")

    @admin.display(description=gettext_lazy("record type"))
    def target_type_display(self, obj: JobItem) -> str:
        return record_type_label(obj.target_type)

    def get_changelist_instance(self, request: HttpRequest):
        cl = super().get_changelist_instance(request)
        cl.result_list = with_live_labels(cl.result_list)
        return cl

    @admin.display(description=gettext_lazy("target"))
    def target_link(self, obj: JobItem) -> str:
        # A link to the record, cut to the column's width with the whole of it on hover; named
        # as the reader may see it (`with_live_labels`), else as stored (masked).
        shown = getattr(obj, "live_repr", obj.target_repr)
        return record_link(obj.target_type, obj.target_id, truncated(shown))
