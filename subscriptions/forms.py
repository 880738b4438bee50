from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import InvoiceStatus
from .rules import ALLOWED_TARGETS

TARGET_CHOICES = [(s.value, s.label) for s in InvoiceStatus if s.value in ALLOWED_TARGETS]


class StatusChangeForm(forms.Form):
    status = forms.TypedChoiceField(label=_("New status"), choices=TARGET_CHOICES, coerce=int)
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Kept with the job so others can see why the change was made."),
    )

    def clean(self):
        data = super().clean()
        if self.data.get("step") == "confirm" and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason for the change."))
        return data


class CreateInvoiceForm(forms.Form):
    val_date = forms.DateTimeField(
        label=_("Charge date"), help_text=_("dd.mm.yyyy or dd.mm.yyyy hh:mm")
    )
    amount = forms.DecimalField(
        label=_("Amount (₺)"), max_digits=12, decimal_places=2, min_value=0.01, localize=True
    )
    agent_amount = forms.DecimalField(
        label=_("Agent share (₺)"),
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        localize=True,
    )
    company_amount = forms.DecimalField(
        label=_("Company share (₺)"),
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        localize=True,
    )
    invoice_no = forms.CharField(
        label=_("Payment record number"),
        max_length=32,
        required=False,
        help_text=_("Leave empty to have one generated."),
    )
