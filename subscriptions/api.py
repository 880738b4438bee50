from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.api import filters as api_filters
from upstream.api.idempotency import idempotent
from upstream.api.permissions import IsStaff
from upstream.api.serializers import JobRefSerializer
from upstream.api.timeline import TimelineMixin

from . import services
from .models import Subscription, SubscriptionInvoice
from .serializers import (
    BulkStatusInputSerializer,
    CreateInvoiceInputSerializer,
    StatusAllInputSerializer,
    StatusInputSerializer,
    SubscriptionInvoiceSerializer,
    SubscriptionSerializer,
)


class SubscriptionViewSet(TimelineMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Subscription.objects.all()
    serializer_class = SubscriptionSerializer
    filterset_fields = ["reference_no", "subscription_id", "is_fixed_price"]

    @action(
        detail=True, methods=["post"], url_path="set-invoices-status", permission_classes=[IsStaff]
    )
    @idempotent
    def set_invoices_status(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(StatusAllInputSerializer, request)
        job = services.subscription_set_status_all(
            subscriptions=Subscription.objects.filter(pk=get_object_or_404(Subscription, pk=pk).pk),
            status=data["status"],
            actor=request.user,
            reason=data["reason"],
        )
        return Response({"job": JobRefSerializer(job).data}, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"], url_path="invoices", permission_classes=[IsStaff])
    @idempotent
    def create_invoice(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(CreateInvoiceInputSerializer, request)
        record = services.subscription_invoice_create(
            subscription=get_object_or_404(Subscription, pk=pk),
            actor=request.user,
            idempotency_key=_idempotency_key(request),
            **data,
        )
        return Response(SubscriptionInvoiceSerializer(record).data, status=status.HTTP_201_CREATED)


class SubscriptionInvoiceFilter(api_filters.FilterSet):
    val_date_after = api_filters.IsoDateTimeFilter(field_name="val_date", lookup_expr="gte")
    val_date_before = api_filters.IsoDateTimeFilter(field_name="val_date", lookup_expr="lte")

    class Meta:
        model = SubscriptionInvoice
        fields = ["invoice_id", "invoice_no", "subscription", "status"]


class SubscriptionInvoiceViewSet(TimelineMixin, viewsets.ReadOnlyModelViewSet):
    queryset = SubscriptionInvoice.objects.select_related("subscription")
    serializer_class = SubscriptionInvoiceSerializer
    filterset_class = SubscriptionInvoiceFilter

    @action(detail=True, methods=["post"], url_path="set-status", permission_classes=[IsStaff])
    @idempotent
    def set_status(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(StatusInputSerializer, request)
        record = services.subscription_invoice_set_status(
            record=get_object_or_404(
                SubscriptionInvoice.objects.select_related("subscription"), pk=pk
            ),
            status=data["status"],
            actor=request.user,
            reason=data["reason"],
            idempotency_key=_idempotency_key(request),
        )
        return Response(SubscriptionInvoiceSerializer(record).data)

    @extend_schema(operation_id="subscription_invoices_set_status_bulk")
    @action(detail=False, methods=["post"], url_path="set-status", permission_classes=[IsStaff])
    @idempotent
    def set_status_bulk(self, request: Request) -> Response:
        data = _valid(BulkStatusInputSerializer, request)
        records = SubscriptionInvoice.objects.filter(pk__in=data["ids"])
        missing = set(data["ids"]) - set(records.values_list("pk", flat=True))
        if missing:
            return Response(
                {"detail": f"Unknown payment record ids: {sorted(missing)[:20]}"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        job = services.subscription_invoice_set_status_bulk(
            records=records,
            status=data["status"],
            actor=request.user,
            reason=data["reason"],
        )
        return Response({"job": JobRefSerializer(job).data}, status=status.HTTP_202_ACCEPTED)


def _valid(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _idempotency_key(request: Request) -> str:
    return request.headers.get("Idempotency-Key", "").strip()


def register_routes(router) -> None:
    router.register("subscriptions", SubscriptionViewSet)
    router.register("subscription-invoices", SubscriptionInvoiceViewSet)
