"""The staff groups that exist after every migrate."""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

OPERATORS = "Finance operators"
VIEWERS = "Finance viewers"
# Operators who may also approve another person's push over the thresholds (four eyes).
APPROVERS = "Finance approvers"
FINANCE_APPS = ("upstream", "subscriptions", "billing", "billqueries")
# Django's own model permissions; every other permission of these apps is a push or a run.
_MODEL_ACTIONS = ("add_", "change_", "delete_", "view_")
# Pushes operators do not get by default: a superuser grants them to named people.
HELD_BACK = frozenset({"override_closed_invoice", "approve_job"})
# Customers' names, e-mails and phone numbers unmasked (KVKK, security/personal.py): for the
# people who act on customers' records, operators and approvers; viewers see them masked.
PERSONAL_DATA = ("security", "view_personal_data")


def groups_ensure(using: str = "default") -> None:
    """Operators view and push; viewers only view; approvers push and approve others' jobs.
    Operators and approvers see personal data unmasked, viewers masked. Re-running adds newly
    created permissions."""
    for label in (*FINANCE_APPS, PERSONAL_DATA[0]):
        # Permissions are created per app after migrate; make sure ours exist before we read them.
        create_permissions(apps.get_app_config(label), verbosity=0, using=using)
    perms = Permission.objects.using(using).filter(content_type__app_label__in=FINANCE_APPS)
    personal = list(
        Permission.objects.using(using).filter(
            content_type__app_label=PERSONAL_DATA[0], codename=PERSONAL_DATA[1]
        )
    )
    view = [p for p in perms if p.codename.startswith("view_")]
    push = [
        p
        for p in perms
        if not p.codename.startswith(_MODEL_ACTIONS) and p.codename not in HELD_BACK
    ]
    viewers, _ = Group.objects.using(using).get_or_create(name=VIEWERS)
    viewers.permissions.set(view)
    operators, _ = Group.objects.using(using).get_or_create(name=OPERATORS)
    operators.permissions.set(view + push + personal)
    approve = [
        p for p in perms if p.codename == "approve_job" and p.content_type.app_label == "upstream"
    ]
    approvers, _ = Group.objects.using(using).get_or_create(name=APPROVERS)
    approvers.permissions.set(view + push + approve + personal)
