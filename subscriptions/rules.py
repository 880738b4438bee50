"""Rules for Paynet payment records, checked before anything is sent: no I/O but mirror reads.

Status transitions: Paynet documents none (paynet.md §8); these follow the simulator's
assumption 6 so staff see a refusal before anything is sent, and Paynet stays the final judge.
Creating a record: the checks of `invoice_create_verdict`, shared by the admin and the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from upstream.l10n.formats import money
from upstream.pushes.verdicts import Verdict, VerdictKind

from .models import InvoiceStatus, Subscription, SubscriptionInvoice

# Only Paynet's own charge produces "Charged"; merchants record outside collection as 2.
ALLOWED_TARGETS = frozenset({0, 2, 4, 5, 6})
# Money taken, or a deleted record: never changed again.
FINAL_STATUSES = frozenset({InvoiceStatus.DONE_SUCCEED, InvoiceStatus.DELETED})


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


def status_change_filter(target: int) -> Q:
    """The records `status_verdict(record.status, target)` lets change, as a database filter."""
    return ~Q(status=target) & ~Q(status__in=FINAL_STATUSES)


# --- creating a payment record (create_invoice, paynet.md §5.1) ---------------------------------

# Paynet charges in kuruş (§4): more than two decimals cannot be sent.
KURUS_EXPONENT = -2
# Paynet's currency field takes TRY; the sandbox also reads TL as TRY (§10, assumption 13).
LIRA_CODES = frozenset({"TRY", "TL"})


@dataclass(frozen=True)
class CreateCheck:
    """One rule a new payment record was checked against; `error` is empty when it passed."""

    label: str
    field: str = "__all__"
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class CreateVerdict:
    """What the rules say about a payment record before it is sent to Paynet."""

    checks: tuple[CreateCheck, ...]
    # Records with the same charge day and amount: a warning, never a refusal on its own.
    duplicates: tuple[SubscriptionInvoice, ...] = ()

    @property
    def duplicate_warning(self) -> str:
        if not self.duplicates:
            return ""
        return _(
            "This subscription already has a payment record with the same charge date and "
            "amount: %(numbers)s."
        ) % {"numbers": ", ".join(r.invoice_no for r in self.duplicates)}

    def errors(self, *, allow_duplicate: bool = False) -> dict[str, list[str]]:
        """The failed rules by field; a duplicate counts only when it was not allowed."""
        errors: dict[str, list[str]] = {}
        for check in self.checks:
            if check.error:
                errors.setdefault(check.field, []).append(check.error)
        if self.duplicates and not allow_duplicate:
            errors["allow_duplicate"] = [
                self.duplicate_warning + " " + _("Confirm that it should be created anyway.")
            ]
        return errors


def _has_kurus_precision(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= KURUS_EXPONENT


def invoice_split(
    amount: Decimal, agent_amount: Decimal | None, company_amount: Decimal | None
) -> tuple[Decimal, Decimal]:
    """The (agent, company) shares Paynet will record: a missing share is the rest of the amount,
    and with neither given the company gets it all (paynet.md §10, assumption 10)."""
    if agent_amount is not None and company_amount is not None:
        return agent_amount, company_amount
    if agent_amount is not None:
        return agent_amount, amount - agent_amount
    if company_amount is not None:
        return amount - company_amount, company_amount
    return Decimal("0"), amount


def invoice_create_verdict(
    *,
    subscription: Subscription,
    val_date: datetime | None,
    amount: Decimal | None,
    agent_amount: Decimal | None = None,
    company_amount: Decimal | None = None,
    invoice_no: str = "",
    currency: str = "TRY",
    now: datetime | None = None,
) -> CreateVerdict:
    """Check a new payment record against the rules; reads the mirror, sends nothing."""
    now = now or timezone.now()
    checks: list[CreateCheck] = []

    def check(label: str, field: str, error: str = "") -> None:
        checks.append(CreateCheck(label=label, field=field, error=error))

    check(
        _("The subscription has a variable price"),
        "__all__",
        _("Payment records can only be created for variable-price subscriptions.")
        if subscription.is_fixed_price
        else "",
    )
    if val_date is None:
        check(_("The charge date is not in the past"), "val_date", _("Enter the charge date."))
    else:
        check(
            _("The charge date is not in the past"),
            "val_date",
            _("The charge date %(date)s is in the past.")
            % {"date": formats.date_format(timezone.localtime(val_date), "SHORT_DATETIME_FORMAT")}
            if val_date < now
            else "",
        )
    amount_ok = amount is not None and amount > 0 and _has_kurus_precision(amount)
    if amount is None or amount <= 0:
        amount_error = _("The amount must be greater than zero.")
    elif not amount_ok:
        amount_error = _("The amount can have at most two decimals.")
    else:
        amount_error = ""
    check(_("The amount is above zero with at most two decimals"), "amount", amount_error)
    shares_ok = True
    for name, part, label in (
        ("agent_amount", agent_amount, _("The agent share is not negative")),
        ("company_amount", company_amount, _("The company share is not negative")),
    ):
        if part is None:
            continue
        bad = part < 0 or not _has_kurus_precision(part)
        shares_ok = shares_ok and not bad
        check(
            label,
            name,
            _("Enter a non-negative amount with at most two decimals.") if bad else "",
        )
    if amount_ok and shares_ok:
        split_error = ""
        if agent_amount is not None and company_amount is not None:
            if agent_amount + company_amount != amount:
                split_error = _(
                    "Agent and company amounts must add up to the amount (%(sum)s ≠ %(amount)s)."
                ) % {"sum": money(agent_amount + company_amount), "amount": money(amount)}
        elif (agent_amount or company_amount or 0) > amount:
            split_error = _("A share cannot be larger than the amount.")
        check(_("The agent and company shares add up to the amount"), "__all__", split_error)
    check(
        _("The currency is Turkish lira"),
        "currency",
        "" if currency in LIRA_CODES else _("Paynet supports only Turkish lira (TRY)."),
    )
    invoice_no = (invoice_no or "").strip()
    if invoice_no:
        used = subscription.invoices.filter(invoice_no=invoice_no).exists()
        check(
            _("The payment record number is not used on this subscription"),
            "invoice_no",
            _("This subscription already has a payment record %(no)s.") % {"no": invoice_no}
            if used
            else "",
        )
    duplicates: tuple[SubscriptionInvoice, ...] = ()
    if val_date is not None and amount_ok:
        # "Same day" as staff read it: the local (Istanbul) calendar day of the charge date.
        duplicates = tuple(
            subscription.invoices.filter(
                val_date__date=timezone.localtime(val_date).date(), amount=amount
            ).order_by("val_date", "pk")
        )
    return CreateVerdict(checks=tuple(checks), duplicates=duplicates)
