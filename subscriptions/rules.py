"""Status-transition rules for Paynet payment records.

Paynet documents none (paynet.md §8); these follow the simulator's assumption 6 so staff see a
refusal before anything is sent, and Paynet stays the final judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.utils.translation import gettext as _

from .models import InvoiceStatus

# Only Paynet's own charge produces "Charged"; merchants record outside collection as 2.
ALLOWED_TARGETS = frozenset({0, 2, 4, 5, 6})
# Money taken, or a deleted record: never changed again.
FINAL_STATUSES = frozenset({InvoiceStatus.DONE_SUCCEED, InvoiceStatus.DELETED})


class VerdictKind(StrEnum):
    CHANGE = "change"
    SAME = "same"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str = ""


def status_target_error(target: int) -> str | None:
    """Why a target status cannot be pushed at all, or None."""
    if target not in InvoiceStatus.values:
        return _("%(status)s is not a Paynet status (0, 2, 3, 4, 5 or 6).") % {"status": target}
    if target not in ALLOWED_TARGETS:
        return _("Only Paynet's own charge can set a record to “Charged”.")
    return None


def status_verdict(current: int, target: int) -> Verdict:
    if error := status_target_error(target):
        return Verdict(VerdictKind.BLOCKED, error)
    if current == target:
        return Verdict(VerdictKind.SAME, _("Already in this status."))
    if current in FINAL_STATUSES:
        return Verdict(
            VerdictKind.BLOCKED,
            _("A record in “%(status)s” can no longer change.")
            % {"status": InvoiceStatus(current).label},
        )
    return Verdict(VerdictKind.CHANGE)
