from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from upstream.calls.redaction import redact_headers, redact_shown
from upstream.calls.remask import masked_url
from upstream.models import Job, JobAction, JobItem, Service, UpstreamBreaker, UpstreamCall
from upstream.pushes.approvals import approval_window


class UpstreamCallSerializer(serializers.ModelSerializer):
    """A call as recorded; its headers and bodies masked again as shown
    (upstream/calls/redaction.py), so a row stored before a field joined the lists is not shown
    in clear either."""

    # Built straight from the call's attributes, as the jobs' rows are (JobSerializer): DRF's
    # per-field loop over 21 fields x 500 calls was a third of a full page's Python besides the
    # masking. The keys, their order and every value are DRF's own, masked as before
    # (tests/upstream/test_api_lists.py).
    def to_representation(self, instance: UpstreamCall) -> dict:
        call = instance
        headers = call.request_headers
        status_code = call.status_code
        return {
            "id": call.pk,
            "service": call.service,
            "operation": str(call.operation),
            "method": str(call.method),
            # Masked again as shown, as the bodies are: a row stored before a key joined the
            # lists (calls_remask masks the stored ones) shows no e-mail in its query either.
            "url": masked_url(str(call.url)),
            "request_headers": (
                redact_headers(headers) if isinstance(headers, dict) else redact_shown(headers)
            ),
            "request": redact_shown(call.request),
            "status_code": None if status_code is None else int(status_code),
            "response": redact_shown(call.response),
            "upstream_code": str(call.upstream_code),
            "upstream_message": str(call.upstream_message),
            "outcome": call.outcome,
            "error": str(call.error),
            "duration_ms": int(call.duration_ms),
            "attempt": int(call.attempt),
            "created_at": _shown(self._created_at, call.created_at),
            "job": call.job_id,
            "job_item": call.job_item_id,
            "target_type": str(call.target_type),
            "target_id": str(call.target_id),
            "target_repr": str(call.target_repr),
        }

    @cached_property
    def _created_at(self) -> serializers.Field:
        return self.fields["created_at"]

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
    """A job's item. A row is built straight from the model's attributes: DRF's generic loop (a
    `get_attribute` and a `to_representation` per field) was most of a jobs page's time, 500 jobs
    x 10 items (issue 20). The keys, their order and every value are DRF's own (only the
    date-time goes through its field); tests/upstream/test_api_lists.py compares the two."""

    def to_representation(self, item: JobItem) -> dict:
        finished_at = item.finished_at
        return {
            "id": item.pk,
            "position": item.position,
            "target_type": item.target_type,
            "target_id": item.target_id,
            "target_repr": item.target_repr,
            "state": item.state,
            "outcome": item.outcome,
            "in_doubt": item.in_doubt,
            "message": item.message,
            "upstream_code": item.upstream_code,
            "result": item.result,
            "call": item.call_id,
            "attempts": item.attempts,
            "finished_at": (
                None if finished_at is None else self._finished_at.to_representation(finished_at)
            ),
        }

    @cached_property
    def _finished_at(self) -> serializers.Field:
        return self.fields["finished_at"]

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


class JobActionSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = JobAction
        fields = ["kind", "actor", "on_behalf", "reason", "at"]


class JobSerializer(serializers.ModelSerializer):
    done = serializers.IntegerField(read_only=True)
    # Sent, or tried (a cancelled job: before the cancel took hold); cancelled items were not.
    sent = serializers.IntegerField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    items = serializers.SerializerMethodField()
    # Who cancelled, retried, resumed or withdrew it, and why (another person's step needs one).
    actions = serializers.SerializerMethodField()
    # Awaiting approval: what its creator sent without approval in the window before it.
    creator_window = serializers.SerializerMethodField()

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
            "sent",
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
            "actions",
            "creator_window",
            "items",
        ]

    # Built straight from the job's attributes, as JobItemSerializer does its rows: DRF's loop (a
    # `get_attribute` and a `to_representation` per field, 23 fields x 500 jobs) was most of a
    # full jobs page's Python. Datetimes and the amount still go through their DRF fields; the
    # keys, their order and every value are DRF's own (tests/upstream/test_api_lists.py).
    def to_representation(self, job: Job) -> dict:
        fields = self._typed_fields
        created_by, decided_by = job.created_by, job.decided_by
        return {
            "id": job.pk,
            "kind": str(job.kind),
            "title": str(job.title),
            "state": job.state,
            "reason": str(job.reason),
            "total": int(job.total),
            "done": int(job.done),
            "succeeded": int(job.succeeded),
            "failed": int(job.failed),
            "cancelled": int(job.cancelled),
            "skipped": int(job.skipped),
            "sent": int(job.sent),
            "inline": bool(job.inline),
            "prepared": None if job.prepared is None else int(job.prepared),
            "amount": _shown(fields["amount"], job.amount),
            "created_by": None if created_by is None else created_by.username,
            "approval_expires_at": _shown(fields["approval_expires_at"], job.approval_expires_at),
            "decided_by": None if decided_by is None else decided_by.username,
            "decided_at": _shown(fields["decided_at"], job.decided_at),
            "rejection_reason": str(job.rejection_reason),
            "created_at": _shown(fields["created_at"], job.created_at),
            "started_at": _shown(fields["started_at"], job.started_at),
            "finished_at": _shown(fields["finished_at"], job.finished_at),
            "actions": self.get_actions(job),
            "creator_window": self.get_creator_window(job),
            "items": self.get_items(job),
        }

    @cached_property
    def _typed_fields(self) -> dict[str, serializers.Field]:
        names = ("amount", "approval_expires_at", "decided_at", "created_at", "started_at")
        return {name: self.fields[name] for name in (*names, "finished_at")}

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "hours": {"type": "number"},
                "records": {"type": "integer"},
                "amount": {"type": "string"},
            },
        }
    )
    def get_creator_window(self, job: Job) -> dict | None:
        if not job.is_awaiting_approval or not job.created_by_id:
            return None
        usage = approval_window(job.created_by, before=job.created_at)
        return {"hours": usage.hours, "records": usage.records, "amount": f"{usage.amount:.2f}"}

    @extend_schema_field(JobActionSerializer(many=True))
    def get_actions(self, job: Job) -> list[dict]:
        # The list's prefetch puts them in a list (upstream.api.views.JobViewSet): `job.actions`
        # would clone its queryset for every job of the page (0.2 s for 500 jobs).
        actions = getattr(job, "listed_actions", None)
        if actions is None:
            actions = job.actions.select_related("actor")
        child = self._action_serializer
        return [child.to_representation(action) for action in actions]

    @cached_property
    def _action_serializer(self) -> JobActionSerializer:
        return JobActionSerializer(context=self.context)

    def get_items(self, job: Job) -> list[dict]:
        limit = self.context.get("items_limit", 1000)
        items = getattr(job, "first_items", None)
        if items is None:
            items = job.items.order_by("position")[:limit]
        # One item serializer for the whole page: building one per job made DRF work out its
        # fields again for every job (get_fields ran 471 times for a page of 500 jobs).
        child = self._item_serializer
        return [child.to_representation(item) for item in items]

    @cached_property
    def _item_serializer(self) -> JobItemSerializer:
        # A list's rows share this serializer (the ListSerializer's one child), so it is built
        # once per page.
        return JobItemSerializer(context=self.context)


class JobRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "state", "title", "total"]


class UpstreamHealthSerializer(serializers.Serializer):
    """An upstream's health (upstream.calls.health.UpstreamHealth), read-only."""

    service = serializers.ChoiceField(choices=Service.choices)
    label = serializers.CharField()
    mode = serializers.ChoiceField(choices=[("sandbox", "sandbox"), ("live", "live")])
    breaker = serializers.ChoiceField(choices=UpstreamBreaker.State.choices)
    retry_after = serializers.IntegerField(help_text="Seconds before the breaker lets a call go.")
    consecutive_failures = serializers.IntegerField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    calls = serializers.IntegerField(help_text="Finished calls in the last 15 minutes.")
    error_rate = serializers.FloatField(
        allow_null=True, help_text="Share of those calls that failed (transport, timeout, 5xx)."
    )
    p95_ms = serializers.IntegerField(allow_null=True)
    in_doubt = serializers.IntegerField(help_text="Calls of the last 15 minutes left in doubt.")


def _shown(field: serializers.Field, value: object) -> object:
    """A value as its DRF field shows it; None stays None, as in DRF's own loop."""
    return None if value is None else field.to_representation(value)
