from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.api.idempotency import idempotent
from upstream.api.permissions import IsStaff

from . import services
from .models import BillQueryBatch, BillQueryLine, Institution
from .serializers import (
    BatchInputSerializer,
    BillQueryBatchDetailSerializer,
    BillQueryBatchSerializer,
    InstitutionSerializer,
)


class InstitutionViewSet(viewsets.ReadOnlyModelViewSet):
    """The Payofin institution catalogue, as last synced."""

    queryset = Institution.objects.all()
    serializer_class = InstitutionSerializer
    filterset_fields = ["soot_code", "invoice_type", "additional_no_required", "active"]


class BillQueryBatchViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = BillQueryBatch.objects.select_related("job", "created_by")
    serializer_class = BillQueryBatchSerializer
    filterset_fields = ["state", "source"]

    def get_permissions(self):
        # Creating runs queries: any staff member may ask, the service checks run_billquery.
        if self.action in ("create", "rerun_failed"):
            return [IsStaff()]
        return super().get_permissions()

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            lines = BillQueryLine.objects.order_by("position").prefetch_related("debts")
            queryset = queryset.prefetch_related(Prefetch("lines", queryset=lines))
        return queryset

    def get_serializer_class(self):
        if self.action == "retrieve":
            return BillQueryBatchDetailSerializer
        if self.action == "create":
            return BatchInputSerializer
        return BillQueryBatchSerializer

    @extend_schema(request=BatchInputSerializer, responses={202: BillQueryBatchSerializer})
    @idempotent
    def create(self, request: Request, *args, **kwargs) -> Response:
        services.require_run_permission(request.user)  # 403 before any 400
        data = BatchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            batch = services.bill_query_batch_create(
                lines=data.validated_data["lines"],
                actor=request.user,
                source=BillQueryBatch.Source.API,
            )
        except services.InvalidLines as error:
            return Response(
                {
                    "detail": error.messages[0],
                    "lines": [
                        {
                            "index": i.number - 1,
                            "line": i.number,
                            "input": i.text,
                            "reason": i.reason,
                        }
                        for i in error.invalid
                    ],
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(BillQueryBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: BillQueryBatchSerializer})
    @action(detail=True, methods=["post"], url_path="rerun-failed")
    @idempotent
    def rerun_failed(self, request: Request, pk: str | None = None) -> Response:
        batch = services.bill_query_batch_rerun_failed(
            get_object_or_404(BillQueryBatch, pk=pk), request.user
        )
        return Response(BillQueryBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)


def register_routes(router) -> None:
    router.register("institutions", InstitutionViewSet)
    router.register("bill-query-batches", BillQueryBatchViewSet)
