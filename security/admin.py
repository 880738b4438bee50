"""The API tokens' page: make one (shown once), see whose they are and when they expire, revoke
(delete). Replaces django-rest-knox's own page, which shows digests and takes no expiry rule."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from knox.models import AuthToken

from .tokens import api_token_create, api_token_revoke


class ApiTokenForm(forms.ModelForm):
    user = forms.ModelChoiceField(
        label=gettext_lazy("user"),
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
    )

    class Meta:
        model = AuthToken
        fields = ["user"]


if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("key_start", "owner", "made", "expires")
    list_select_related = ("user",)
    search_fields = ("user__username", "token_key")
    ordering = ("-created",)

    @admin.display(description=gettext_lazy("token starts with"))
    def key_start(self, obj: AuthToken) -> str:
        return f"{obj.token_key[:8]}…"

    @admin.display(description=gettext_lazy("user"), ordering="user__username")
    def owner(self, obj: AuthToken) -> Any:
        return obj.user

    @admin.display(description=gettext_lazy("made at"), ordering="created")
    def made(self, obj: AuthToken) -> Any:
        return obj.created

    @admin.display(description=gettext_lazy("expires at"), ordering="expiry")
    def expires(self, obj: AuthToken) -> Any:
        return obj.expiry

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        return ApiTokenForm

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user",) if obj is None else ("key_start", "owner", "made", "expires")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("key_start", "owner", "made", "expires")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AuthToken, form: Any, change: bool) -> None:
        made, token = api_token_create(user=form.cleaned_data["user"], actor=request.user)
        obj.pk = made.pk
        obj.digest, obj.token_key = made.digest, made.token_key
        self.message_user(
            request,
            _(
                "The token for %(user)s is %(token)s — copy it now, it is not stored and is "
                "never shown again. It expires after %(idle)s hours unused."
            )
            % {"user": made.user, "token": token, "idle": _idle_hours()},
            messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: AuthToken) -> None:
        api_token_revoke(token=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for token in queryset.select_related("user"):
            api_token_revoke(token=token, actor=request.user)


def _idle_hours() -> str:
    from django.conf import settings

    return f"{settings.API_TOKEN_IDLE_HOURS:g}"


# Django's user and group pages, with the permissions named in the reader's language.


def _relabelled(field: forms.Field | None) -> forms.Field | None:
    from upstream.l10n.permissions import permission_label

    queryset = getattr(field, "queryset", None)
    if queryset is not None and queryset.model is Permission:
        field.label_from_instance = permission_label  # type: ignore[attr-defined]
    return field


class _PermissionLabels:
    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        return _relabelled(super().formfield_for_manytomany(db_field, request, **kwargs))  # type: ignore[misc]


for _model, _base in ((Group, GroupAdmin), (get_user_model(), UserAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, type(_base.__name__, (_PermissionLabels, _base), {}))
