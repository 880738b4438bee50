"""The job page's approval panel: what the creator saw, approve, reject
(upstream/pushes/approvals.py)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from upstream.admin.tools import error_text
from upstream.models import Job
from upstream.pushes.approvals import (
    approval_window,
    awaiting_for,
    can_decide,
    count_confirmation_required,
    job_approve,
    job_reject,
    window_text,
)
from upstream.pushes.bulk import lowest_ids
from upstream.pushes.kinds import PlannedChange, PushKind, kind_for

SAMPLE = 50


class AwaitingMyApprovalFilter(admin.SimpleListFilter):
    title = gettext_lazy("approval")
    parameter_name = "approval"

    def lookups(self, request, model_admin):
        return [("mine", _("Waiting for my approval"))]

    def queryset(self, request, queryset):
        if self.value() == "mine":
            return queryset.filter(pk__in=awaiting_for(request.user).values("pk"))
        return queryset


def selection_sample(job: Job, limit: int = SAMPLE) -> list[PlannedChange]:
    """The first records of the job (its items, or, not yet written, its frozen selection) as
    the kind plans them: whose, how much, from what to what. Rows are loaded in the reader's
    request, so a reader without the permission sees customers' names masked."""
    items = list(job.items.order_by("position").values_list("target_id", "payload")[:limit])
    payloads: dict[int, dict[str, Any]] = {}
    if items:
        ids = [int(pk) for pk, _payload in items if str(pk).isdigit()]
        # What each item sends: a single push or a re-push has no launch params to plan from.
        payloads = {int(pk): p for pk, p in items if str(pk).isdigit() and isinstance(p, dict)}
    elif job.prepared is None:
        return []
    else:
        # Not the whole selection parsed (6 MB at 50,000 records) for 50 ids (decision 019).
        ids = lowest_ids(job.pk, limit)
    kind = kind_for(job.kind)
    model = apps.get_model(kind.target_type)
    queryset = model._default_manager.filter(pk__in=ids)
    found = {r.pk: r for r in kind.expand_queryset(queryset)}
    records = [found[pk] for pk in ids if pk in found]
    if isinstance(kind, PushKind):
        return kind.planned(records, job.params or {}, payloads)
    return [PlannedChange(record=str(r)) for r in records]


class ApprovalAdminMixin:
    """Approve and reject views for JobAdmin, and the panel's context for its page."""

    def approval_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:pk>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="{}_{}_approve".format(*info),
            ),
            path(
                "<int:pk>/reject/",
                self.admin_site.admin_view(self.reject_view),
                name="{}_{}_reject".format(*info),
            ),
        ]

    def approval_context(self, request: HttpRequest, job: Job) -> dict[str, Any]:
        if not job.is_awaiting_approval and job.decided_by_id is None:
            return {}
        return {
            "approval_sample": selection_sample(job) if job.is_awaiting_approval else [],
            "can_decide": job.is_awaiting_approval and can_decide(request.user, job),
            "own_job": job.created_by_id == request.user.pk,
            "count_required": job.is_awaiting_approval and count_confirmation_required(job),
            # What the creator sent without approval in the window before this job.
            "creator_window": window_text(approval_window(job.created_by, before=job.created_at))
            if job.created_by_id
            else "",
        }

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._decision(request, pk, approve=True)

    def reject_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._decision(request, pk, approve=False)

    def _decision(self, request: HttpRequest, pk: int, *, approve: bool) -> HttpResponse:
        job = get_object_or_404(Job, pk=pk)
        back = HttpResponseRedirect(reverse("admin:upstream_job_change", args=[pk]))
        if request.method != "POST":
            return back
        try:
            if approve:
                raw = request.POST.get("confirm_count", "").strip().replace(".", "")
                job_approve(
                    job=job, actor=request.user, confirm_count=int(raw) if raw.isdigit() else None
                )
                self.message_user(
                    request,
                    _("Job #%(id)s approved; it is being sent.") % {"id": job.pk},
                    messages.SUCCESS,
                )
            else:
                job_reject(job=job, actor=request.user, reason=request.POST.get("reason", ""))
                self.message_user(
                    request,
                    _("Job #%(id)s rejected; nothing was sent.") % {"id": job.pk},
                    messages.SUCCESS,
                )
        except PermissionDenied as error:
            page = render_to_string(
                "admin/upstream/job/forbidden.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("Not allowed"),
                    "message": str(error),
                    "job": job,
                },
                request=request,
            )
            return HttpResponseForbidden(page)
        except ValidationError as error:
            self.message_user(request, error_text(error), messages.ERROR)
        return back
