from rest_framework import serializers

from upstream.api.serializers import JobRefSerializer

from .models import BillDebt, BillQueryBatch, BillQueryLine, Institution
from .services import MAX_BATCH_LINES


class InstitutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Institution
        fields = [
            "id",
            "soot_code",
            "name",
            "invoice_type",
            "description",
            "field_title",
            "mask",
            "subscriber_required",
            "additional_no_required",
            "partial_amount",
            "active",
            "synced_at",
        ]


class BillDebtSerializer(serializers.ModelSerializer):
    class Meta:
        model = BillDebt
        fields = [
            "invoice_query_id",
            "subscriber_no",
            "customer_name",
            "invoice_no",
            "exp_date",
            "invoice_amount",
            "merchant_profit",
            "total_amount",
            "soot_code",
        ]


class BillQueryLineSerializer(serializers.ModelSerializer):
    debts = BillDebtSerializer(many=True, read_only=True)

    class Meta:
        model = BillQueryLine
        fields = [
            "id",
            "position",
            "soot_code",
            "subscriber_no",
            "additional_no",
            "firm_ref_no",
            "attempt",
            "state",
            "result",
            "result_code",
            "result_message",
            "outcome",
            "queried_at",
            "debt_count",
            "debt_total",
            "fee_total",
            "debts",
        ]


class BillQueryBatchSerializer(serializers.ModelSerializer):
    job = JobRefSerializer(read_only=True)
    created_by = serializers.StringRelatedField()
    pending_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = BillQueryBatch
        fields = [
            "id",
            "state",
            "source",
            "filename",
            "created_by",
            "created_at",
            "finished_at",
            "line_count",
            "found_count",
            "no_debt_count",
            "failed_count",
            "pending_count",
            "debt_count",
            "debt_total",
            "fee_total",
            "job",
        ]


class BillQueryBatchDetailSerializer(BillQueryBatchSerializer):
    lines = BillQueryLineSerializer(many=True, read_only=True)

    class Meta(BillQueryBatchSerializer.Meta):
        fields = [*BillQueryBatchSerializer.Meta.fields, "lines"]


class LineInputSerializer(serializers.Serializer):
    soot_code = serializers.IntegerField()
    subscriber_no = serializers.CharField(max_length=64, trim_whitespace=True)
    additional_no = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )


class BatchInputSerializer(serializers.Serializer):
    lines = LineInputSerializer(many=True, allow_empty=False, max_length=MAX_BATCH_LINES)
