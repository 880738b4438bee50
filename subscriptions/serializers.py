from decimal import Decimal

from rest_framework import serializers

from security.personal import PersonalDataSerializerMixin
from upstream.api.fields import DateTimeField, column_max

from .models import Subscription, SubscriptionInvoice


class SubscriptionSerializer(PersonalDataSerializerMixin, serializers.ModelSerializer):
    """`name_surname` masked without `security.view_personal_data` (security/personal.py)."""

    class Meta:
        model = Subscription
        fields = [
            "id",
            "subscription_id",
            "reference_no",
            "name_surname",
            "is_fixed_price",
            "amount",
            "agent_amount",
            "company_amount",
            "currency",
            "interval",
            "interval_count",
            "status",
            "created_date",
            "synced_at",
        ]


class SubscriptionInvoiceSerializer(serializers.ModelSerializer):
    class Meta:
        model = SubscriptionInvoice
        fields = [
            "id",
            "subscription",
            "invoice_id",
            "invoice_no",
            "val_date",
            "amount",
            "agent_amount",
            "company_amount",
            "currency",
            "status",
            "synced_at",
        ]


def reason_field() -> serializers.CharField:
    # Required for every money-affecting write (INTERFACES.md); blank or spaces only is a 400.
    return serializers.CharField(max_length=500)


class StatusInputSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    reason = reason_field()


class BulkStatusInputSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(
            min_value=1, max_value=column_max(SubscriptionInvoice, "pk")
        ),
        allow_empty=False,
        max_length=100_000,
    )
    status = serializers.IntegerField()
    reason = reason_field()


class StatusAllInputSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    reason = reason_field()


class CreateInvoiceInputSerializer(serializers.Serializer):
    val_date = DateTimeField(input_formats=["iso-8601", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y"])
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    agent_amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0"), required=False, allow_null=True
    )
    company_amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0"), required=False, allow_null=True
    )
    invoice_no = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    currency = serializers.CharField(max_length=3, required=False, default="TRY")
    reason = reason_field()
    # A record with the same charge day and amount as an existing one is refused without it.
    allow_duplicate = serializers.BooleanField(required=False, default=False)
