import json
from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Prefetch, prefetch_related_objects
from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.api import filters as api_filters
from upstream.api.drift import DriftViewSet
from upstream.api.idempotency import idempotent
from upstream.api.permissions import CanReadUpstreamHealth, IsStaff
from upstream.api.serializers import (
    JobItemSerializer,
    JobSerializer,
    UpstreamCallSerializer,
    UpstreamHealthSerializer,
)
from upstream.calls.health import upstream_health
from upstream.models import Job, JobAction, JobItem, UpstreamCall
from upstream.pushes.approvals import job_approve, job_reject
from upstream.pushes.jobs import (
    cancel_counts,
    job_cancel,
    job_resume_cancelled,
    job_retry_failed,
)


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, required=False, default="")


class StepSerializer(serializers.Serializer):
    # Required on another person's job (with upstream.manage_others_jobs); kept on the job.
    reason = serializers.CharField(allow_blank=True, required=False, default="", max_length=2000)


class ApproveSerializer(serializers.Serializer):
    # Required for a live push over the threshold: the number of records, typed by the approver.
    confirm_count = serializers.IntegerField(required=False, allow_null=True, default=None)


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

    LIST_ITEMS = 10

    def get_queryset(self):
        jobs = (
            super()
            .get_queryset()
            .select_related("created_by", "decided_by")
            # Never shown here: the frozen selection (up to megabytes), the folds, the params.
            .defer(*UNLISTED_JOB_FIELDS)
            .prefetch_related(
                Prefetch(
                    "actions",
                    queryset=JobAction.objects.select_related("actor"),
                    to_attr="listed_actions",
                )
            )
        )
        return jobs

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None and self.action == "list":
            first_items_attach(page, self.LIST_ITEMS)
        return page

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["items_limit"] = self.LIST_ITEMS if self.action == "list" else 1000
        return context

    @extend_schema(request=StepSerializer, responses={202: None})
    @action(detail=True, methods=["post"], url_path="retry-failed", permission_classes=[IsStaff])
    @idempotent
    def retry_failed(self, request: Request, pk: str | None = None) -> Response:
        job = job_retry_failed(
            job=get_object_or_404(Job, pk=pk), actor=request.user, reason=_reason(request)
        )
        return Response({"job": JobSerializer(job, context={"items_limit": 0}).data}, status=202)

    @extend_schema(request=StepSerializer, responses={202: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def resume(self, request: Request, pk: str | None = None) -> Response:
        job = job_resume_cancelled(
            job=get_object_or_404(Job, pk=pk), actor=request.user, reason=_reason(request)
        )
        return Response({"job": JobSerializer(job, context={"items_limit": 0}).data}, status=202)

    @extend_schema(request=ApproveSerializer, responses={202: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def approve(self, request: Request, pk: str | None = None) -> Response:
        body = ApproveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = job_approve(
            job=get_object_or_404(Job, pk=pk),
            actor=request.user,
            confirm_count=body.validated_data["confirm_count"],
        )
        return Response({"job": JobSerializer(job, context={"items_limit": 0}).data}, status=202)

    @extend_schema(request=RejectSerializer, responses={200: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def reject(self, request: Request, pk: str | None = None) -> Response:
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = job_reject(
            job=get_object_or_404(Job, pk=pk),
            actor=request.user,
            reason=body.validated_data["reason"],
        )
        return Response({"job": JobSerializer(job, context={"items_limit": 0}).data})

    @extend_schema(request=StepSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    @idempotent
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = job_cancel(
            job=get_object_or_404(Job, pk=pk), actor=request.user, reason=_reason(request)
        )
        counts = cancel_counts(job)
        return Response(
            {
                "job": JobSerializer(job, context={"items_limit": 0}).data,
                # Answered once the cancel took hold: these will not be sent (resumable) ...
                "not_sent": counts.not_sent,
                # ... and these were sent before it did, or are on their way and complete.
                "sent": counts.sent,
            }
        )


# What a jobs page shows of an item (JobItemSerializer): the payload and the translatable
# message, two JSON documents per row to read and parse, are left in the database (the read
# below names the same columns, as ListedItem's fields).
LISTED_ITEM_FIELDS = ("job", *JobItemSerializer.Meta.fields)
UNLISTED_JOB_FIELDS = (
    "selection",
    "params",
    "title_text",
    "title_folded",
    "reason_folded",
    "idempotency_key",
)


def first_items_attach(jobs: list[Job], limit: int) -> None:
    """Each job's first `limit` items as `job.first_items`, for a whole page in one query.

    Each job's items are read from the (job, position) index, `limit` rows each: on PostgreSQL a
    LATERAL subquery per job, on SQLite (no LATERAL) a correlated IN subquery per job of the
    page's ids. A window over the page's jobs (ROW_NUMBER() OVER (PARTITION BY job_id), Django's
    sliced prefetch) would number every item of every job first: 250,000 rows for a page of 500
    bulk jobs at 1M, 100,000 (200 ms on SQLite) at 100k (issue 20).
    """
    if not jobs:
        return
    qn = connection.ops.quote_name
    table = qn(JobItem._meta.db_table)
    ids = [job.pk for job in jobs]
    if connection.vendor == "postgresql":
        first: Any = RawSQL(  # noqa: S611 (values bound as parameters)
            "SELECT i.id FROM unnest(%s::bigint[]) AS j(id) CROSS JOIN LATERAL "  # noqa: S608 (names from the model's meta)
            f"(SELECT id FROM {table} WHERE job_id = j.id ORDER BY position LIMIT %s) AS i",
            [ids, limit],
        )
    elif connection.vendor == "sqlite":
        first = RawSQL(  # noqa: S611 (values bound as parameters)
            f"SELECT x.id FROM json_each(%s) AS j, {table} AS x WHERE x.id IN "  # noqa: S608 (names from the model's meta)
            f"(SELECT y.id FROM {table} AS y WHERE y.job_id = j.value ORDER BY y.position "
            "LIMIT %s)",
            [json.dumps(ids), limit],
        )
    else:
        rows = JobItem.objects.only(*LISTED_ITEM_FIELDS).order_by("position")[:limit]
        prefetch_related_objects(jobs, Prefetch("items", queryset=rows, to_attr="first_items"))
        return
    # Rows, not model instances: building 5,000 JobItems was a third of a full page's time;
    # values_list still turns each column into its Python value as the model would.
    by_job: dict[int, list[ListedItem]] = defaultdict(list)
    rows = JobItem.objects.filter(pk__in=first).order_by("job_id", "position")
    for row in rows.values_list(*ListedItem._fields):
        item = ListedItem._make(row)
        by_job[item.job_id].append(item)
    for job in jobs:
        job.first_items = by_job.get(job.pk, [])


class ListedItem(NamedTuple):
    """A job's item as its jobs page shows it (JobItemSerializer reads these attributes)."""

    pk: int
    job_id: int
    position: int
    target_type: str
    target_id: str
    target_repr: str
    state: str
    outcome: str
    in_doubt: bool
    message: str
    upstream_code: str
    result: Any
    call_id: int | None
    attempts: int
    finished_at: datetime | None


def _reason(request: Request) -> str:
    body = StepSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data["reason"]


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
    router.register("drift", DriftViewSet)
