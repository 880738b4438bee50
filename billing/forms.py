from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib.admin import widgets
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .models import Invoice, InvoiceItem
from .pushes import EDITABLE_FIELDS, INT_LIMIT


class InvoiceAutocomplete(widgets.AutocompleteSelect):
    def optgroups(self, name: str, value: Any, attr: Any = None) -> Any:
        # A forged, non-numeric or out-of-range id is an error on the form, not a crash here.
        value = [v for v in value if str(v).isdigit() and len(str(v)) <= 18]
        return super().optgroups(name, value, attr)


class InvoiceItemEditForm(forms.Form):
    """The fields staff may change at WiseCP, with the version they read and a reason.

    Validating it sends nothing: the admin shows a confirmation first, then calls
    services.invoice_item_update. `changes()` holds only what the user edited, so an untouched
    total is recomputed as quantity × unit price when either changes.
    """

    description = forms.CharField(
        label=_("Description"),
        strip=False,
        widget=widgets.AdminTextareaWidget(attrs={"rows": 2}),
    )
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=INT_LIMIT)
    amount = forms.DecimalField(
        label=_("Unit price"), max_digits=14, decimal_places=2, localize=True
    )
    total = forms.DecimalField(
        label=_("Total"),
        max_digits=14,
        decimal_places=2,
        localize=True,
        help_text=_("Leave it as it is to send quantity × unit price when either changes."),
    )
    tax_exempt = forms.BooleanField(label=_("Tax exempt"), required=False)
    sequence = forms.IntegerField(label=_("Sequence"), min_value=0, max_value=INT_LIMIT)
    order_id = forms.IntegerField(
        label=_("Linked service id"),
        min_value=0,
        max_value=INT_LIMIT,
        help_text=_("0 = not linked to a service."),
    )
    due_date = forms.SplitDateTimeField(
        label=_("Due date"),
        required=False,
        widget=widgets.AdminSplitDateTime,
        help_text=_("Date and time, in Istanbul time. Empty clears it."),
    )
    attributes = forms.JSONField(
        label=_("Attributes"),
        required=False,
        widget=widgets.AdminTextareaWidget(attrs={"rows": 4}),
    )
    invoice = forms.ModelChoiceField(
        label=_("Invoice"),
        queryset=Invoice.objects.all(),
        help_text=_("Search by invoice number to move the item to another invoice."),
    )
    version = forms.IntegerField(widget=forms.HiddenInput)
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_(
            "Required when the unit price, total, quantity, tax exemption or invoice change."
        ),
    )
    override = forms.BooleanField(
        label=_("Override"),
        required=False,
        help_text=_("Change the money of an item on a paid, cancelled or refunded invoice."),
    )

    def __init__(
        self, *args: Any, item: InvoiceItem, admin_site: Any, may_override: bool, **kwargs: Any
    ) -> None:
        kwargs.setdefault(
            "initial",
            {
                **{name: getattr(item, name) for name in EDITABLE_FIELDS},
                "invoice": item.invoice_id,
                "version": item.version,
                "idempotency_key": uuid.uuid4().hex,
            },
        )
        super().__init__(*args, **kwargs)
        self.item = item
        invoice = self.fields["invoice"]
        invoice.widget = InvoiceAutocomplete(InvoiceItem._meta.get_field("invoice"), admin_site)
        invoice.widget.choices = invoice.choices
        if not may_override:
            del self.fields["override"]

    def clean_description(self) -> str:
        # Browsers post line breaks as CRLF; WiseCP and the mirror keep what was typed.
        return self.cleaned_data["description"].replace("\r\n", "\n")

    def clean_attributes(self) -> Any:
        value = self.cleaned_data["attributes"]
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError(_("Attributes must be a JSON object."))
        return value

    def changes(self) -> dict[str, Any]:
        """The editable fields the user changed, by local name."""
        return {
            name: self.cleaned_data[name] for name in EDITABLE_FIELDS if name in self.changed_data
        }

    def add_service_error(self, error: ValidationError) -> None:
        """A service's ValidationError on the fields it names, the rest above the form."""
        if hasattr(error, "error_dict"):
            for name, messages in error.message_dict.items():
                self.add_error(name if name in self.fields else None, messages)
        else:
            self.add_error(None, error.messages)


class BulkActionForm(forms.Form):
    """Shared by the bulk actions: the value (when the action needs one), a reason and, for
    whoever may override closed invoices, the override (a move's form offers it)."""

    needs_value = True
    offers_override = False

    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_(
            "Required when the change moves money (a move to another invoice); kept with the "
            "job so others can see why the change was made."
        ),
    )
    override = forms.BooleanField(
        label=_("Override"),
        required=False,
        help_text=_("Change the money of items on paid, cancelled or refunded invoices."),
    )

    def __init__(self, *args: Any, may_override: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not (self.offers_override and may_override):
            del self.fields["override"]

    @property
    def value(self) -> Any:
        return None

    @property
    def override_asked(self) -> bool:
        return bool(getattr(self, "cleaned_data", {}).get("override"))

    def value_ready(self) -> bool:
        """Can the preview be shown: is every field but the reason valid?"""
        if not self.is_bound:
            return not self.needs_value
        self.is_valid()
        return set(self.errors) <= {"reason"}


class DueDateForm(BulkActionForm):
    due_date = forms.SplitDateTimeField(
        label=_("New due date"),
        widget=widgets.AdminSplitDateTime,
        help_text=_("Date and time, in Istanbul time."),
    )
    field_order = ["due_date", "reason"]

    @property
    def value(self) -> Any:
        return self.cleaned_data["due_date"]


class MoveForm(BulkActionForm):
    target = forms.CharField(
        label=_("Target invoice"),
        max_length=64,
        help_text=_("The invoice number (#367) or WiseCP id (367) of an invoice in the mirror."),
    )
    field_order = ["target", "override", "reason"]
    offers_override = True

    def clean_target(self) -> Invoice:
        text = self.cleaned_data["target"].strip()
        invoice = Invoice.objects.filter(number=text).first()
        digits = text.lstrip("#")
        if invoice is None and digits.isdigit():
            invoice = (
                Invoice.objects.filter(number=f"#{digits}").first()
                or Invoice.objects.filter(wisecp_id=int(digits)).first()
            )
        if invoice is None:
            raise ValidationError(
                _("No invoice %(value)s in the mirror; refresh from WiseCP first.")
                % {"value": text}
            )
        return invoice

    @property
    def value(self) -> Any:
        return self.cleaned_data["target"]


class RenumberForm(BulkActionForm):
    needs_value = False
