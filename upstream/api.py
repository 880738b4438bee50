from django.shortcuts import get_object_or_404
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from . import api_filters
from .api_idempotency import idempotent
from .api_permissions import CanReadUpstreamHealth, IsStaff
from .health import upstream_health
from .models import Job, UpstreamCall
from .serializers import JobSerializer, UpstreamCallSerializer, UpstreamHealthSerializer
from .services import job_cancel, job_retry_failed


class UpstreamCallFilter(api_filters.FilterSet):
    created_after = api_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = api_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = UpstreamCall
        fields = ["service", "operation", "outcome", "job", "target_type", "target_id"]


class UpstreamCallViewSet(viewsets.ReadOnlyModelViewSet):
    """The call log, read-only for everyone."""

    queryset = UpstreamCall.objects.all()
    serializer_class = UpstreamCallSerializer
    filterset_class = UpstreamCallFilter


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Job.objects.all()
    serializer_class = JobSerializer
    filterset_fields = ["state", "kind"]

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["items_limit"] = 50 if self.action == "list" else 1000
        return context

    @action(detail=True, methods=["post"], url_path="retry-failed", permission_classes=[IsStaff])
    @idempotent
    def retry_failed(self, request: Request, pk: str | None = None) -> Response:
        job = job_retry_failed(job=get_object_or_404(Job, pk=pk), actor=request.user)
        return Response({"job": JobSerializer(job, context={"items_limit": 0}).data}, status=202)

    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = job_cancel(job=get_object_or_404(Job, pk=pk), actor=request.user)
        return Response({"job": JobSerializer(job, context={"items_limit": 0}).data})


class UpstreamHealthViewSet(viewsets.GenericViewSet):
    """Per upstream: sandbox or live, its circuit breaker, and its calls of the last 15 minutes."""

    serializer_class = UpstreamHealthSerializer
    permission_classes = [CanReadUpstreamHealth]
    filter_backends: list = []

    def list(self, request: Request) -> Response:
        rows = self.paginate_queryset(upstream_health())
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)


def register_routes(router) -> None:
    router.register("jobs", JobViewSet)
    router.register("upstream-calls", UpstreamCallViewSet)
    router.register("upstreams", UpstreamHealthViewSet, basename="upstream-health")
