"""Text as Turkish readers expect it: a capital İ for a dotted i, a capital I for a dotless ı.

Python's `str.upper()` (and so Django's `capfirst`) turns "iş" into "Iş", a different letter.
"""

from __future__ import annotations

from typing import Any

from django.utils.functional import keep_lazy_text
from django.utils.translation import get_language, gettext_noop

_TURKISH_UPPER = str.maketrans({"i": "İ", "ı": "I"})


def upper(text: str, language: str | None = None) -> str:
    """`text.upper()`, Turkish-aware when the language (default: the active one) is Turkish."""
    if (language or get_language() or "").lower().startswith(("tr", "az")):
        text = text.translate(_TURKISH_UPPER)
    return text.upper()


@keep_lazy_text
def capfirst(value: Any) -> str:
    """Django's `capfirst` with Turkish capitals: "iş kalemleri" -> "İş kalemleri"."""
    text = str(value)
    if not text:
        return text
    return upper(text[0]) + text[1:]


# Django's own labels whose Turkish translation starts with a dotted i, which Django's Python-side
# capfirst (form labels, the app list) would turn into "Izinler". Our catalogue is read first and
# gives them the capital İ.
DJANGO_LABELS = [gettext_noop("permissions")]

# django-axes's labels its Turkish catalogue lacks (the sidebar read "Access failures").
AXES_LABELS = [
    gettext_noop("access failure"),
    gettext_noop("access failures"),
    gettext_noop("Access Attempt"),
    gettext_noop("access attempt expiration"),
    gettext_noop("access attempt expirations"),
    gettext_noop("Access lock out"),
    gettext_noop("Locked Out"),
    gettext_noop("Axes"),
]

# The staff groups (upstream.groups), named in English in the database, as pages mention them.
GROUP_LABELS = [
    gettext_noop("Finance operators"),
    gettext_noop("Finance approvers"),
    gettext_noop("Finance viewers"),
]

# django_tasks_db's model names: translatable there, but it ships no Turkish catalogue.
TASK_LABELS = [gettext_noop("Task Result"), gettext_noop("Task Results")]
