"""A list filter's heading, whole, per filter: "By status" / "Duruma göre".

Django's pattern "By %(filter_title)s" puts the title after "By"; Turkish puts it before "göre"
in the dative, whose ending depends on the word ("Duruma", "Çekim tarihine", "Kuruma"), so no
one pattern can write it. Each filter title (as English names it) has its own heading here; a
test walks every list filter of every changelist and finds its heading (a new filter without
one fails it, not a page).
"""

from __future__ import annotations

from typing import Any

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

HEADINGS: dict[str, Promise] = {
    # Our lists
    "active": pgettext_lazy("list filter", "By active"),
    "additional number required": pgettext_lazy(
        "list filter", "By whether an additional number is required"
    ),
    "approval": pgettext_lazy("list filter", "By approval"),
    "bill type": pgettext_lazy("list filter", "By bill type"),
    "charge date": pgettext_lazy("list filter", "By charge date"),
    "created at": pgettext_lazy("list filter", "By creation date"),
    "created at paynet": pgettext_lazy("list filter", "By creation date at Paynet"),
    "created at wisecp": pgettext_lazy("list filter", "By creation date at WiseCP"),
    "currency": pgettext_lazy("list filter", "By currency"),
    "customer": pgettext_lazy("list filter", "By customer"),
    "due date": pgettext_lazy("list filter", "By due date"),
    "fixed price": pgettext_lazy("list filter", "By fixed price"),
    "groups": pgettext_lazy("list filter", "By group"),
    "in doubt": pgettext_lazy("list filter", "By doubt"),
    "institution": pgettext_lazy("list filter", "By institution"),
    "interval": pgettext_lazy("list filter", "By interval"),
    "invoice number": pgettext_lazy("list filter", "By invoice number"),
    "invoice status": pgettext_lazy("list filter", "By invoice status"),
    "kind": pgettext_lazy("list filter", "By kind"),
    "listed by payofin": pgettext_lazy("list filter", "By Payofin listing"),
    "operation": pgettext_lazy("list filter", "By operation"),
    "outcome": pgettext_lazy("list filter", "By outcome"),
    "partial payment": pgettext_lazy("list filter", "By partial payment"),
    "service": pgettext_lazy("list filter", "By service"),
    "single push": pgettext_lazy("list filter", "By single push"),
    "source": pgettext_lazy("list filter", "By source"),
    "state": pgettext_lazy("list filter", "By state"),
    "status": pgettext_lazy("list filter", "By status"),
    "subscription reference no": pgettext_lazy("list filter", "By subscription reference number"),
    "tax exempt": pgettext_lazy("list filter", "By tax exemption"),
    # Django's users, the task queue and django-axes
    "staff status": pgettext_lazy("list filter", "By staff status"),
    "superuser status": pgettext_lazy("list filter", "By superuser status"),
    "priority": pgettext_lazy("list filter", "By priority"),
    "queue name": pgettext_lazy("list filter", "By queue"),
    "access lock out": pgettext_lazy("list filter", "By access lock-out"),
    "attempt time": pgettext_lazy("list filter", "By attempt time"),
    "locked out": pgettext_lazy("list filter", "By lock-out"),
    "logout time": pgettext_lazy("list filter", "By logout time"),
    "path": pgettext_lazy("list filter", "By path"),
}


def heading_key(title: Any) -> str:
    """The title as English writes it, lower case: the key into HEADINGS."""
    with translation.override("en"):
        return str(title).strip().lower()


def filter_heading(title: Any) -> str:
    """The heading of a list filter titled `title`; the bare title for one without a heading
    (a test keeps that from happening on our pages)."""
    heading = HEADINGS.get(heading_key(title))
    return str(heading) if heading is not None else str(title)[:1].upper() + str(title)[1:]
