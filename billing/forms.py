from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib.admin import widgets
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import gettext_lazy as _

from upstream.errors import UpstreamError

from . import services
from .models import Invoice, InvoiceItem


class InvoiceItemPushForm(forms.ModelForm):
    """The item's change form: validating it pushes the change to WiseCP.

    The push runs as the last step of validation, so a refusal (WiseCP's message, a conflict, a
    validation error) comes back as a form error and the admin re-shows the form with nothing
    saved. On success `pushed` holds the item as the mirror now has it, written from WiseCP's
    answer; the form's own values are never saved.
    """

    version = forms.IntegerField(widget=forms.HiddenInput)
    # Set per request by the admin (see InvoiceItemAdmin.get_form).
    actor: ClassVar[Any] = None

    class Meta:
        model = InvoiceItem
        fields = [*services.EDITABLE_FIELDS, "version"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pushed: InvoiceItem | None = None
        self.change: services.ItemChange | None = None
        if "description" in self.fields:
            self.fields["description"].widget = widgets.AdminTextareaWidget(attrs={"rows": 2})
        if "attributes" in self.fields:
            self.fields["attributes"].widget = widgets.AdminTextareaWidget(attrs={"rows": 4})

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        changes = {name: data[name] for name in services.EDITABLE_FIELDS if name in data}
        try:
            self.change = services.invoice_item_changes(item=self.instance, changes=changes)
            self.pushed = services.invoice_item_update(
                item=self.instance,
                changes=changes,
                expected_version=data["version"],
                actor=self.actor,
            )
        except ValidationError as error:
            if hasattr(error, "error_dict"):
                for name, messages in error.message_dict.items():
                    self.add_error(None if name not in self.fields else name, messages)
            else:
                self.add_error(None, error.messages)
        except (services.ConflictError, UpstreamError, PermissionDenied) as error:
            self.add_error(None, str(error))
        return data


class BulkActionForm(forms.Form):
    """Shared by the three bulk actions: the value (when the action needs one) and a reason."""

    needs_value = True

    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Kept with the job so others can see why the change was made."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.data.get("step") == "confirm" and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason for the change."))
        return data

    @property
    def value(self) -> Any:
        return None

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
    field_order = ["target", "reason"]

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
