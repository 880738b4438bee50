"""Grammar one message pattern cannot carry: the noun after a number.

English writes "490 payment records"; Turkish writes the noun after a number in the singular,
"490 ödeme kaydı" (Django's own pattern wrote "490 ödeme kayıtları").
"""

from __future__ import annotations

from typing import Any

from django.utils import formats
from django.utils.translation import get_language
from django.utils.translation import gettext as _


def noun_after(count: int, opts: Any) -> str:
    """The model's name as it follows `count` in the active language."""
    singular = count == 1 or (get_language() or "").lower().startswith(("tr", "az"))
    return str(opts.verbose_name if singular else opts.verbose_name_plural)


def counted(count: int, opts: Any, shown: str | None = None) -> str:
    """ "490 payment records" / "490 ödeme kaydı"; `shown` is the number as written when it
    is not `count` itself ("about 1,000,000")."""
    number = shown if shown is not None else formats.number_format(count, force_grouping=True)
    return _("%(count)s %(name)s") % {"count": number, "name": noun_after(count, opts)}
