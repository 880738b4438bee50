"""The drift report in the admin: filters by upstream, kind and state; bulk accept and re-push."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from upstream.admin.tools import (
    ReadOnlyListAdmin,
    Repeated,
    confirmation_page,
    launch_once,
    repeated_answer,
    truncated,
)
from upstream.history.drift import drift_resolve_many
from upstream.history.timeline import field_label, format_value, record_link
from upstream.models import Drift

# Entries one confirmation takes (each is read, taken and shown on the page).
DRIFT_AT_ONCE = 500


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"), widget=forms.Textarea(attrs={"rows": 2}), max_length=1000
    )


@admin.register(Drift)
class DriftAdmin(ReadOnlyListAdmin):
    list_display = (
        "first_seen_at",
        "service",
        "record_column",
        "field_column",
        "expected_column",
        "found_column",
        "kind",
        "state",
        "resolved_column",
    )
    list_filter = ("service", "kind", "state")
    list_select_related = ("content_type", "resolved_by")
    sortable_by = ("first_seen_at",)
    actions = ["export_csv", "accept_selected", "repush_selected"]
    csv_fields = (
        "first_seen_at",
        "service",
        "record_label",
        "field",
        "expected",
        "found",
        "kind",
        "state",
    )

    def _model(self, obj: Drift):
        return obj.content_type.model_class()

    @admin.display(description=gettext_lazy("record"))
    def record_column(self, obj: Drift) -> str:
        target = f"{obj.content_type.app_label}.{obj.content_type.model}"
        return record_link(target, obj.object_id, obj.record_label)

    @admin.display(description=gettext_lazy("field"))
    def field_column(self, obj: Drift) -> str:
        return field_label(self._model(obj), obj.field) if obj.field else "—"

    @admin.display(description=gettext_lazy("expected"))
    def expected_column(self, obj: Drift) -> str:
        return format_value(self._model(obj), obj.field, obj.expected) if obj.field else "—"

    @admin.display(description=pgettext_lazy("drift value", "found"))
    def found_column(self, obj: Drift) -> str:
        if obj.kind == Drift.Kind.MISSING:
            return format_html("<em>{}</em>", _("not listed upstream"))
        return format_value(self._model(obj), obj.field, obj.found)

    @admin.display(description=gettext_lazy("resolved by"))
    def resolved_column(self, obj: Drift) -> str:
        # Who and why in one cut cell: the list fits a 1366 px laptop (the reason is whole on
        # hover and on the entry's page).
        if obj.resolved_by is None:
            return "—"
        text = f"{obj.resolved_by}: {obj.resolution_reason}" if obj.resolution_reason else ""
        return truncated(text or str(obj.resolved_by))

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("upstream.resolve_drift")

    @admin.action(description=gettext_lazy("Accept the selected drift…"), permissions=["resolve"])
    def accept_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._resolve(request, queryset, repush=False)

    @admin.action(
        description=gettext_lazy("Re-push the expected values of the selected drift…"),
        permissions=["resolve"],
    )
    def repush_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._resolve(request, queryset, repush=True)

    def _resolve(
        self, request: HttpRequest, queryset: QuerySet, *, repush: bool
    ) -> HttpResponse | None:
        open_entries = queryset.filter(state=Drift.State.OPEN)
        drifts = list(open_entries.select_related("content_type")[:DRIFT_AT_ONCE])
        # Never a silent cut: how many open entries this round leaves for the next.
        left_out = open_entries.count() - len(drifts) if len(drifts) == DRIFT_AT_ONCE else 0
        form = ReasonForm(request.POST if request.POST.get("step") == "confirm" else None)
        if form.is_bound and form.is_valid():
            # Once per confirmation (its one-time token): the same page posted twice goes to
            # the first re-push's job instead of finding its entries taken.
            resolved = launch_once(
                request,
                lambda: drift_resolve_many(
                    drifts=drifts,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    repush=repush,
                ),
                started=lambda result: result[0] > 0,
            )
            if isinstance(resolved, Repeated):
                return repeated_answer(self, request, resolved)
            done, jobs, errors = resolved
            for error in errors:
                self.message_user(request, error, messages.ERROR)
            if jobs:
                self.message_user(
                    request,
                    _("Re-push started as job(s) %(jobs)s.")
                    % {"jobs": ", ".join(f"#{job.pk}" for job in jobs)},
                    messages.SUCCESS,
                )
            self.message_user(
                request, _("%(count)s drift entries resolved.") % {"count": done}, messages.INFO
            )
            if left_out:
                self.message_user(request, _left_out_text(left_out), messages.WARNING)
            return None
        for drift in drifts:
            model = self._model(drift)
            drift.field_label = field_label(model, drift.field) if drift.field else "—"
            drift.expected_shown = format_value(model, drift.field, drift.expected)
            drift.found_shown = format_value(model, drift.field, drift.found)
        title = _("Re-push the expected values") if repush else _("Accept the drift")
        explanation = (
            _(
                "The expected values are sent back through the normal push path: its rules, "
                "the reason and, over the thresholds, a second person's approval. A record's "
                "other drifted fields go back in the same push (an item's unit price and total "
                "in one call)."
            )
            if repush
            else _("The mirror keeps what the upstream holds; the reason is recorded.")
        )
        return confirmation_page(
            request,
            self,
            queryset,
            template="admin/upstream/drift/confirm.html",
            title=title,
            action="repush_selected" if repush else "accept_selected",
            form=form,
            drifts=drifts,
            left_out=_left_out_text(left_out) if left_out else "",
            explanation=explanation,
            button=_("Yes, re-push") if repush else _("Yes, accept"),
        )


def _left_out_text(left_out: int) -> str:
    return _(
        "%(at_once)s entries are handled at a time: %(left)s more of the selection are left "
        "open; run the action again for them."
    ) % {"at_once": DRIFT_AT_ONCE, "left": left_out}
