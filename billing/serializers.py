from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import serializers

from security.personal import PersonalDataSerializerMixin
from upstream.api.fields import DateTimeField, column_max

from .models import Invoice, InvoiceItem
from .pushes import EDITABLE_FIELDS


class InvoiceSerializer(PersonalDataSerializerMixin, serializers.ModelSerializer):
    """`full_name` masked without `security.view_personal_data` (security/personal.py)."""

    item_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "wisecp_id",
            "number",
            "status",
            "currency",
            "subtotal",
            "tax",
            "total",
            "tax_rate",
            "taxfree",
            "taxation_type",
            "created_at_upstream",
            "due_date",
            "payment_date",
            "refund_date",
            "user_id",
            "full_name",
            "company_name",
            "item_count",
            "synced_at",
        ]


class InvoiceItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceItem
        fields = [
            "id",
            "wisecp_id",
            "invoice",
            "sequence",
            "description",
            "quantity",
            "tax_exempt",
            "amount",
            "total",
            "order_id",
            "due_date",
            "attributes",
            "version",
            "synced_at",
        ]


class InvoiceItemPatchSerializer(serializers.Serializer):
    """PATCH input: any editable field, plus the optional `version` the client last read, the
    `reason` for the change and `override` for a closed invoice."""

    invoice = serializers.PrimaryKeyRelatedField(queryset=Invoice.objects.all(), required=False)
    sequence = serializers.IntegerField(
        min_value=0, max_value=column_max(InvoiceItem, "sequence"), required=False
    )
    description = serializers.CharField(required=False, trim_whitespace=False)
    quantity = serializers.IntegerField(
        min_value=1, max_value=column_max(InvoiceItem, "quantity"), required=False
    )
    tax_exempt = serializers.BooleanField(required=False)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, required=False)
    total = serializers.DecimalField(max_digits=14, decimal_places=2, required=False)
    order_id = serializers.IntegerField(
        min_value=0, max_value=column_max(InvoiceItem, "order_id"), required=False
    )
    due_date = DateTimeField(required=False, allow_null=True)
    attributes = serializers.DictField(required=False)
    version = serializers.IntegerField(min_value=1, required=False)
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Why; required when amount, total, quantity, tax_exempt or invoice change.",
    )
    override = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Change an item of a paid, cancelled or refunded invoice (needs the "
        "billing.override_closed_invoice permission and a reason).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                _("These fields cannot be changed: %(fields)s.") % {"fields": ", ".join(unknown)}
            )
        if not set(attrs) & set(EDITABLE_FIELDS):
            raise serializers.ValidationError(_("Give at least one field to change."))
        return attrs
