from rest_framework import serializers

from .models import Job, JobItem, UpstreamCall


class UpstreamCallSerializer(serializers.ModelSerializer):
    class Meta:
        model = UpstreamCall
        fields = [
            "id",
            "service",
            "operation",
            "method",
            "url",
            "request_headers",
            "request",
            "status_code",
            "response",
            "upstream_code",
            "upstream_message",
            "outcome",
            "error",
            "duration_ms",
            "attempt",
            "created_at",
            "job",
            "job_item",
            "target_type",
            "target_id",
            "target_repr",
        ]


class JobItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobItem
        fields = [
            "id",
            "position",
            "target_type",
            "target_id",
            "target_repr",
            "state",
            "outcome",
            "in_doubt",
            "message",
            "upstream_code",
            "result",
            "call",
            "attempts",
            "finished_at",
        ]


class JobSerializer(serializers.ModelSerializer):
    done = serializers.IntegerField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    items = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "title",
            "state",
            "reason",
            "total",
            "done",
            "succeeded",
            "failed",
            "cancelled",
            "skipped",
            "inline",
            "prepared",
            "amount",
            "created_by",
            "approval_expires_at",
            "decided_by",
            "decided_at",
            "rejection_reason",
            "created_at",
            "started_at",
            "finished_at",
            "items",
        ]

    def get_items(self, job: Job) -> list[dict]:
        limit = self.context.get("items_limit", 1000)
        items = getattr(job, "first_items", None)
        if items is None:
            items = job.items.order_by("position")[:limit]
        return JobItemSerializer(items, many=True).data


class JobRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "state", "title", "total"]
