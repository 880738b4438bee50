"""A change form shown again after a failed save names the record as saved.

Django validates the form into the very instance it then shows: the heading ("… | <record>") and
the breadcrumb repeated the text just refused, as if it had been saved. Every admin, Django's own
(users, groups, tokens) included, gets the record as the database holds it for those two places.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import ModelAdmin

_render_change_form = ModelAdmin.render_change_form


def render_change_form(
    self: ModelAdmin,
    request: Any,
    context: dict,
    add: bool = False,
    change: bool = False,
    form_url: str = "",
    obj: Any = None,
) -> Any:
    form = context.get("adminform")
    if change and getattr(obj, "pk", None) is not None and form is not None and form.form.errors:
        saved = type(obj)._default_manager.filter(pk=obj.pk).first()
        if saved is not None:
            context["original"] = saved
            context["subtitle"] = str(saved)
    return _render_change_form(self, request, context, add, change, form_url, obj)


def install() -> None:
    """Called once from UpstreamConfig.ready()."""
    ModelAdmin.render_change_form = render_change_form
