"""The drift report over the API: `GET /api/drift/`, accept and re-push (upstream.history.drift)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.api import filters as api_filters
from upstream.api.fields import column_max
from upstream.api.idempotency import idempotent
from upstream.api.permissions import IsStaff
from upstream.api.serializers import JobRefSerializer
from upstream.history.drift import drift_accept, drift_repush, drift_repush_selection
from upstream.models import Drift


class DriftSerializer(serializers.ModelSerializer):
    record_type = serializers.SerializerMethodField()
    record_id = serializers.IntegerField(source="object_id", read_only=True)
    record = serializers.CharField(source="record_label", read_only=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Drift
        fields = [
            "id",
            "service",
            "record_type",
            "record_id",
            "record",
            "field",
            "expected",
            "found",
            "kind",
            "state",
            "first_seen_at",
            "last_seen_at",
            "resolved_at",
            "resolved_by",
            "resolution_reason",
            "job",
        ]

    def get_record_type(self, obj: Drift) -> str:
        return f"{obj.content_type.app_label}.{obj.content_type.model}"


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=False, trim_whitespace=True)


class RepushSelectionSerializer(ReasonSerializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=column_max(Drift, "pk")),
        allow_empty=False,
        max_length=10_000,
    )


class DriftFilter(api_filters.FilterSet):
    class Meta:
        model = Drift
        fields = ["service", "kind", "state"]


class DriftViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Drift.objects.select_related("content_type", "resolved_by").order_by(
        "-first_seen_at", "-id"
    )
    serializer_class = DriftSerializer
    filterset_class = DriftFilter

    @extend_schema(request=ReasonSerializer, responses={200: DriftSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def accept(self, request: Request, pk: str | None = None) -> Response:
        drift = get_object_or_404(Drift, pk=pk)
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        drift = drift_accept(
            drift=drift,
            actor=request.user,
            reason=body.validated_data["reason"],
        )
        return Response(DriftSerializer(drift).data)

    @extend_schema(request=ReasonSerializer, responses={200: None, 202: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def repush(self, request: Request, pk: str | None = None) -> Response:
        drift = get_object_or_404(Drift.objects.select_related("content_type"), pk=pk)
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = drift_repush(
            drift=drift,
            actor=request.user,
            reason=body.validated_data["reason"],
        )
        data = {
            "drift": DriftSerializer(result.drift).data,
            "job": JobRefSerializer(result.job).data if result.job is not None else None,
        }
        return Response(data, status=status.HTTP_202_ACCEPTED if result.accepted else 200)

    @extend_schema(
        operation_id="drift_repush_selection",
        request=RepushSelectionSerializer,
        responses={202: None},
    )
    @action(detail=False, methods=["post"], url_path="repush", permission_classes=[IsStaff])
    @idempotent
    def repush_selection(self, request: Request) -> Response:
        """Re-push a selection of open entries as one bulk push per push kind (its approvals
        and job page): 202 with the jobs, the entries re-pushed and the refusals."""
        body = RepushSelectionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        drifts = list(
            Drift.objects.select_related("content_type").filter(pk__in=body.validated_data["ids"])
        )
        if missing := set(body.validated_data["ids"]) - {d.pk for d in drifts}:
            raise serializers.ValidationError(
                {"ids": [_("Unknown drift entry: %(id)s.") % {"id": pk} for pk in sorted(missing)]}
            )
        launch = drift_repush_selection(
            drifts=drifts, actor=request.user, reason=body.validated_data["reason"]
        )
        if launch.forbidden and not launch.jobs:
            raise PermissionDenied(next(iter(launch.refused.values()), ""))
        if not launch.jobs:
            raise serializers.ValidationError({"ids": launch.errors})
        data = {
            "job": JobRefSerializer(launch.jobs[0]).data,
            "jobs": JobRefSerializer(launch.jobs, many=True).data,
            "repushed": launch.done,
            "refused": launch.errors,
        }
        return Response(data, status=status.HTTP_202_ACCEPTED)
