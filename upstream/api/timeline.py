"""`GET /api/<resource>/{pk}/timeline/`: a mirrored record's history, oldest first."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.history.timeline import record_timeline


class TimelineChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class TimelineEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    actor = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    summary = serializers.CharField(allow_blank=True)
    call = serializers.IntegerField(allow_null=True)
    job = serializers.IntegerField(allow_null=True)
    changes = TimelineChangeSerializer(many=True)


class TimelineMixin:
    """Adds the record's timeline to a mirrored resource's viewset (read permission as the
    record's own page)."""

    @extend_schema(responses={200: TimelineEventSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        from security.personal import sees_personal_data

        record = self.get_object()
        events = record_timeline(record, masked=not sees_personal_data(request.user))
        return Response(TimelineEventSerializer(events, many=True).data)
