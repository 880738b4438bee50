from __future__ import annotations

import uuid
from decimal import Decimal, DecimalException

from django import forms
from django.contrib.admin import widgets
from django.core.validators import MinValueValidator
from django.utils.translation import gettext_lazy as _

from upstream.l10n.formats import money, parse_amount

from .models import InvoiceStatus
from .pushes import ALLOWED_TARGETS

TARGET_CHOICES = [(s.value, s.label) for s in InvoiceStatus if s.value in ALLOWED_TARGETS]


def one_time_token() -> forms.CharField:
    """A hidden key, new each time the form is first shown and posted back unchanged, so a form
    sent twice (a double click, a reload) is recognised as one operation (Idempotency-Key)."""
    return forms.CharField(
        widget=forms.HiddenInput, max_length=64, initial=lambda: uuid.uuid4().hex
    )


def reason_field(*, required: bool) -> forms.CharField:
    return forms.CharField(
        label=_("Reason"),
        required=required,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Kept with the change so others can see why it was made."),
    )


class StatusChangeForm(forms.Form):
    status = forms.TypedChoiceField(label=_("New status"), choices=TARGET_CHOICES, coerce=int)
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Kept with the job so others can see why the change was made."),
    )
    # The preview's highest id, posted back with the confirmation (records added later are out).
    upto = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if self.data.get("step") == "confirm" and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason for the change."))
        return data


class RecordStatusForm(forms.Form):
    """The status change of one payment record, from its own page."""

    status = forms.TypedChoiceField(label=_("New status"), choices=TARGET_CHOICES, coerce=int)
    reason = reason_field(required=True)
    idempotency_key = one_time_token()


class _LiraMinimum(MinValueValidator):
    def __call__(self, value: Decimal) -> None:
        if value < self.limit_value:
            raise forms.ValidationError(
                _("Enter an amount of at least %(limit)s.") % {"limit": money(self.limit_value)},
                code="min_value",
            )


class LiraField(forms.DecimalField):
    """A ₺ amount typed the Turkish way ("2.500,00") or the plain way ("2500.00")."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_digits", 12)
        kwargs.setdefault("decimal_places", 2)
        # Django's own minimum message writes the limit as "0.01": ours writes "₺ 0,01".
        minimum = kwargs.pop("min_value", None)
        super().__init__(localize=True, **kwargs)
        self.widget.attrs.setdefault("inputmode", "decimal")
        if minimum is not None:
            self.validators.append(_LiraMinimum(Decimal(str(minimum))))

    def to_python(self, value):
        # Not DecimalField's own parsing: with localize it drops every "." in Turkish.
        if value in self.empty_values:
            return None
        try:
            return Decimal(parse_amount(str(value)))
        except DecimalException:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class CreateInvoiceForm(forms.Form):
    val_date = forms.SplitDateTimeField(
        label=_("Charge date"),
        widget=widgets.AdminSplitDateTime,
        help_text=_("Date dd.mm.yyyy and time hh:mm, Istanbul time."),
    )
    amount = LiraField(label=_("Amount (₺)"), min_value=0.01)
    agent_amount = LiraField(label=_("Agent share (₺)"), min_value=0, required=False)
    company_amount = LiraField(label=_("Company share (₺)"), min_value=0, required=False)
    invoice_no = forms.CharField(
        label=_("Payment record number"),
        max_length=32,
        required=False,
        help_text=_("Leave empty to have one generated."),
    )
    reason = reason_field(required=True)
    idempotency_key = one_time_token()
    # Shown on the confirmation page only, when a record with the same day and amount exists.
    allow_duplicate = forms.BooleanField(label=_("Create anyway"), required=False)
