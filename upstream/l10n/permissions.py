"""A permission as the group and user pages list it, in the reader's language.

Django stores a permission's name once, in English, when the migrations run ("Can add payment
record", "Can push invoice item changes to WiseCP"), and the permission pickers show that text
on Turkish pages too. The label is built when it is shown: Django's four default permissions
from their action and the model's name, ours from the catalogue (their Meta names are
translated strings).
"""

from __future__ import annotations

from django.contrib.auth.models import Permission
from django.utils.translation import gettext, pgettext

_DEFAULT = {
    "add": lambda name: pgettext("permission", "Can add %(name)s") % {"name": name},
    "change": lambda name: pgettext("permission", "Can change %(name)s") % {"name": name},
    "delete": lambda name: pgettext("permission", "Can delete %(name)s") % {"name": name},
    "view": lambda name: pgettext("permission", "Can view %(name)s") % {"name": name},
}


def permission_name(permission: Permission) -> str:
    """The permission's name in the active language."""
    model = permission.content_type.model_class()
    action, _sep, model_name = permission.codename.partition("_")
    if model is not None and action in _DEFAULT and model_name == model._meta.model_name:
        return _DEFAULT[action](model._meta.verbose_name)
    return gettext(permission.name)


def permission_label(permission: Permission) -> str:
    """ "Paynet abonelikleri | ödeme kaydı | ödeme kaydı ekleyebilir": app, model, name."""
    return f"{permission.content_type} | {permission_name(permission)}"
