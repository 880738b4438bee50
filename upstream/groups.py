"""The staff groups that exist after every migrate."""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

from upstream import registry

OPERATORS = "Finance operators"
VIEWERS = "Finance viewers"
# Operators who may also approve another person's push over the thresholds (four eyes).
APPROVERS = "Finance approvers"
# Django's own model permissions; every other permission of these apps is a push or a run.
_MODEL_ACTIONS = ("add_", "change_", "delete_", "view_")
# Customers' names, e-mails and phone numbers unmasked (KVKK, security/personal.py): for the
# people who act on customers' records, operators and approvers; viewers see them masked.
PERSONAL_DATA = ("security", "view_personal_data")


def _finance_apps() -> tuple[str, ...]:
    """The shared layer and every app that registered a mirrored model (upstream.registry)."""
    labels = dict.fromkeys(
        ["upstream", *(m.model._meta.app_label for m in registry.mirrored_models())]
    )
    return tuple(labels)


def groups_ensure(using: str = "default") -> None:
    """Operators view and push; viewers only view; approvers push, approve others' jobs and
    steer them (upstream.manage_others_jobs).
    Operators and approvers see personal data unmasked, viewers masked. Re-running adds newly
    created permissions."""
    finance_apps = _finance_apps()
    for label in (*finance_apps, PERSONAL_DATA[0]):
        # Permissions are created per app after migrate; make sure ours exist before we read them.
        create_permissions(apps.get_app_config(label), verbosity=0, using=using)
    perms = Permission.objects.using(using).filter(content_type__app_label__in=finance_apps)
    personal = list(
        Permission.objects.using(using).filter(
            content_type__app_label=PERSONAL_DATA[0], codename=PERSONAL_DATA[1]
        )
    )
    # Pushes operators do not get by default: a superuser grants them to named people.
    held_back = {
        "upstream.approve_job",
        "upstream.manage_others_jobs",
        *registry.held_back_permissions(),
    }
    view = [p for p in perms if p.codename.startswith("view_")]
    push = [
        p
        for p in perms
        if not p.codename.startswith(_MODEL_ACTIONS)
        and f"{p.content_type.app_label}.{p.codename}" not in held_back
    ]
    viewers, _ = Group.objects.using(using).get_or_create(name=VIEWERS)
    viewers.permissions.set(view)
    operators, _ = Group.objects.using(using).get_or_create(name=OPERATORS)
    operators.permissions.set(view + push + personal)
    # Approvers also steer others' jobs (cancel, retry, resume, withdraw; always with a reason).
    approve = [
        p
        for p in perms
        if p.codename in ("approve_job", "manage_others_jobs")
        and p.content_type.app_label == "upstream"
    ]
    approvers, _ = Group.objects.using(using).get_or_create(name=APPROVERS)
    approvers.permissions.set(view + push + approve + personal)
